"""The README stays a short entry point, and every link of it and of docs/ leads somewhere."""

import os
import re
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pages():
    pages = [os.path.join(ROOT, "README.md")]
    for folder, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".md")]
    return pages


def _anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    with open(path) as f:
        headings = [line.lstrip("#").strip() for line in f if re.match(r"#+ ", line)]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def broken_links(page):
    """`[(link, why)]` of the relative links of `page` that lead nowhere."""
    with open(page) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)  # Code is not links.
    broken = []
    for link in LINK.findall(text):
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
        if not os.path.exists(path):
            broken.append((link, "no such file"))
        elif anchor and path.endswith(".md") and anchor not in _anchors(path):
            broken.append((link, "no such heading"))
    return broken


class DocsTest(tf.test.TestCase):
    def test_readme_is_short_and_has_contents(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            lines = f.read().splitlines()
        self.assertLessEqual(len(lines), 300)
        self.assertIn("## Contents", lines)

    def test_every_relative_link_leads_to_a_file_and_heading(self):
        for page in _pages():
            self.assertEqual(broken_links(page), [], os.path.relpath(page, ROOT))

    def test_the_link_check_catches_a_broken_link(self):
        page = os.path.join(self.get_temp_dir(), "page.md")
        with open(page, "w") as f:
            f.write("# Title\n\n[ok](#title) [gone](missing.md) [no heading](#nowhere)\n")
        self.assertEqual(
            broken_links(page), [("missing.md", "no such file"), ("#nowhere", "no such heading")]
        )


if __name__ == "__main__":
    tf.test.main()
