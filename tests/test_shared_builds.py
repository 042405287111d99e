"""The builds shared by tests (`tests/cli_helpers.cached`): once, complete, or not at all."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import subprocess
import textwrap
from unittest import mock

import tensorflow as tf

from tests import cli_helpers

# A child process that asks for build "probe": the build logs its start and takes a second.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from tests import cli_helpers

    def build(folder):
        with open(os.path.join(cli_helpers.CACHE_DIR, "builds.log"), "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        time.sleep(1)
        with open(os.path.join(folder, "out.txt"), "w") as f:
            f.write("done")

    print(cli_helpers.cached("probe", build, key=["k"]))
    """
)


class SharedBuildsTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.cache = os.path.join(self.get_temp_dir(), "cache")
        patcher = mock.patch.object(cli_helpers, "CACHE_DIR", self.cache)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_two_processes_asking_at_once_share_one_complete_build(self):
        code = CHILD.format(root=cli_helpers.ROOT)
        env = dict(os.environ, ACTIVE_KERAS_TEST_CACHE=self.cache)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
            )
            for _ in range(2)
        ]
        folders = [p.communicate(timeout=120)[0].strip() for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0])
        self.assertEqual(folders[0], folders[1])
        with open(os.path.join(folders[0], "out.txt")) as f:
            self.assertEqual(f.read(), "done")
        with open(os.path.join(self.cache, "builds.log")) as f:
            self.assertLen(f.read().split(), 1)  # The second waited instead of building again.
        # Nothing half-built is left beside the build.
        self.assertEqual([e for e in os.listdir(self.cache) if e.startswith(".")], [])

    def test_a_failed_build_leaves_nothing_and_the_next_call_builds_again(self):
        def fail(folder):
            with open(os.path.join(folder, "half.txt"), "w") as f:
                f.write("half")
            raise AssertionError("the run failed")

        with self.assertRaisesRegex(AssertionError, "the run failed"):
            cli_helpers.cached("probe", fail)
        self.assertEqual([e for e in os.listdir(self.cache) if not e.endswith(".lock")], [])
        calls = []

        def build(folder):
            calls.append(folder)

        first = cli_helpers.cached("probe", build)
        self.assertEqual(cli_helpers.cached("probe", build), first)
        self.assertLen(calls, 1)
        self.assertTrue(os.path.isdir(first))

    def test_the_key_and_the_package_source_name_the_build(self):
        made = []
        a = cli_helpers.cached("probe", made.append, key=["a"])
        b = cli_helpers.cached("probe", made.append, key=["b"])
        self.assertNotEqual(a, b)
        self.assertIn(f"-{cli_helpers.source_hash()}-", os.path.basename(a))
        with mock.patch.object(cli_helpers, "source_hash", return_value="another"):
            c = cli_helpers.cached("probe", made.append, key=["a"])
        self.assertNotEqual(a, c)  # A change of the package source builds anew.
        self.assertLen(made, 3)


if __name__ == "__main__":
    tf.test.main()
