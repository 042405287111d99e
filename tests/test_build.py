"""BUILD names every library, binary and test, and is what tools/update_build.py writes."""

import ast
import glob
import os

from tools import update_build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ("py_library", "py_binary", "py_test")


def _targets():
    with open(os.path.join(ROOT, "BUILD")) as f:
        tree = ast.parse(f.read())
    targets = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in RULES:
            kwargs = {
                k.arg: ast.literal_eval(k.value) if k.arg != "deps" else ast.unparse(k.value)
                for k in node.keywords
            }
            targets.append((node.func.id, kwargs))
    return targets


def test_build_is_up_to_date():
    with open(os.path.join(ROOT, "BUILD")) as f:
        assert f.read() == update_build.generate(), "run: python tools/update_build.py"


def test_every_python_file_is_in_exactly_one_target():
    srcs = [s for _, kw in _targets() for s in kw.get("srcs", [])]
    files = {
        os.path.relpath(p, ROOT)
        for folder in ("active_keras", "tools", "tests")
        for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
    }
    assert sorted(files - set(srcs)) == [], "files missing from BUILD"
    assert sorted(set(srcs) - files) == [], "BUILD names files that do not exist"
    assert len(srcs) == len(set(srcs)), "a file is in two targets"


def test_tests_are_py_tests_binaries_have_mains_and_deps_resolve():
    targets = _targets()
    names = {kw["name"] for _, kw in targets}
    assert len(names) == len(targets), "duplicate target names"
    for rule, kw in targets:
        for dep in ast.literal_eval(kw.get("deps", "[]").replace("requirement(", "(")):
            if dep.startswith(":"):
                assert dep[1:] in names, (kw["name"], dep)
        if any(s.startswith("tests/test_") for s in kw.get("srcs", [])):
            assert rule == "py_test", kw["name"]
        if "main" in kw:
            assert rule == "py_binary" and os.path.exists(os.path.join(ROOT, kw["main"]))
    assert {"main_bin", "report_bin", "tools_benchmark"} <= names
