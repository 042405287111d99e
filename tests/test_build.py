"""BUILD, MODULE.bazel and requirements_lock.txt: what tools/update_build.py writes, and loadable.

Bazel itself cannot be fetched here, so the files are evaluated as the Python
subset of Starlark they are written in, with stub rules that record each call:
the checks are those Bazel's loading phase would fail on (unknown attributes,
missing files, undefined labels, requirements the pip hub does not have).
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ast
import glob
import glob as glob_lib

import tensorflow as tf
from packaging.utils import canonicalize_name

from tools import update_build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ("py_library", "py_binary", "py_test")
# The attributes of rules_python's rules this project uses; a typo is an unknown one.
ATTRIBUTES = {
    "py_library": {"name", "srcs", "deps"},
    "py_binary": {"name", "srcs", "main", "deps"},
    "py_test": {"name", "srcs", "main", "size", "tags", "data", "deps"},
    "filegroup": {"name", "srcs"},
}
SIZES = ("small", "medium", "large", "enormous")
LOADS = {
    "@rules_python//python:defs.bzl": {"py_binary", "py_library", "py_test"},
    "@pip//:requirements.bzl": {"requirement"},
}


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


class Requirement(str):
    """What the stub `requirement("name")` returns: a label that remembers its package."""

    def __new__(cls, name):
        label = super().__new__(cls, f"@pip//{canonicalize_name(name)}")
        label.package = name
        return label


def _evaluate_build():
    """Runs BUILD with stub rules.

    Returns:
      `(loaded, targets)`: the symbols each `load()` asked for, and `(rule, kwargs)`
      for each rule call, in order.
    """
    loaded, targets = {}, []

    def load(label, *symbols):
        loaded.setdefault(label, set()).update(symbols)

    def rule(kind):
        def call(**kwargs):
            targets.append((kind, kwargs))

        return call

    def glob(patterns):
        return sorted(
            os.path.relpath(path, ROOT)
            for pattern in patterns
            for path in glob_lib.glob(os.path.join(ROOT, pattern), recursive=True)
            if os.path.isfile(path)
        )

    namespace = {"load": load, "requirement": Requirement, "glob": glob, "__builtins__": {}}
    namespace.update({kind: rule(kind) for kind in RULES + ("filegroup",)})
    with open(os.path.join(ROOT, "BUILD")) as f:
        exec(compile(f.read(), "BUILD", "exec"), namespace)  # noqa: S102 - our own file.
    return loaded, targets


def _evaluate_module():
    """Runs MODULE.bazel with stub functions; returns `{function: [kwargs, ...]}`."""
    calls = {}

    def record(kind):
        def call(*args, **kwargs):
            calls.setdefault(kind, []).append((args, kwargs))
            return Extension(kind, args)

        return call

    class Extension:
        def __init__(self, kind, args):
            self.kind, self.args = kind, args

        def __getattr__(self, tag):  # `pip.parse(...)`, `python.toolchain(...)`.
            return record(f"{self.args[1]}.{tag}")

    namespace = {"__builtins__": {}}
    namespace.update(
        {kind: record(kind) for kind in ("module", "bazel_dep", "use_extension", "use_repo")}
    )
    with open(os.path.join(ROOT, "MODULE.bazel")) as f:
        exec(compile(f.read(), "MODULE.bazel", "exec"), namespace)  # noqa: S102
    return calls


def _lock():
    """requirements_lock.txt as `{canonical name: version}`."""
    pins = {}
    with open(os.path.join(ROOT, "requirements_lock.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins[canonicalize_name(name)] = version
    return pins


class BuildTest(tf.test.TestCase):
    def test_build_is_up_to_date(self):
        for name, text in update_build.outputs().items():
            with open(os.path.join(ROOT, name)) as f:
                self.assertEqual(
                    f.read(), text, f"{name}: run .venv/bin/python tools/update_build.py"
                )

    def test_every_python_file_is_in_exactly_one_target(self):
        # A `<name>_bin` binary repeats its library's file as its `main`: not a second owner.
        srcs = [
            s
            for rule, kw in _targets()
            if not (rule == "py_binary" and kw["name"].endswith("_bin"))
            for s in kw.get("srcs", [])
        ]
        files = {
            os.path.relpath(p, ROOT)
            for folder in ("active_keras", "tools", "tests")
            for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
        }
        self.assertEqual(sorted(files - set(srcs)), [], "files missing from BUILD")
        self.assertEqual(sorted(set(srcs) - files), [], "BUILD names files that do not exist")
        self.assertEqual(len(srcs), len(set(srcs)), "a file is in two targets")

    def test_tests_are_py_tests_binaries_have_mains_and_deps_resolve(self):
        targets = _targets()
        names = {kw["name"] for _, kw in targets}
        self.assertEqual(len(names), len(targets), "duplicate target names")
        for rule, kw in targets:
            for dep in ast.literal_eval(kw.get("deps", "[]").replace("requirement(", "(")):
                if dep.startswith(":"):
                    self.assertIn(dep[1:], names, (kw["name"], dep))
            if any(s.startswith("tests/test_") for s in kw.get("srcs", [])):
                self.assertEqual(rule, "py_test", kw["name"])
            if "main" in kw:
                self.assertIn(rule, ("py_binary", "py_test"), kw["name"])
                self.assertTrue(os.path.exists(os.path.join(ROOT, kw["main"])), kw["name"])
        self.assertLessEqual({"main_bin", "analysis_report_bin", "tools_benchmark"}, names)
        self.assertIn("test_selectors", names)  # `bazel test //:test_selectors`.

    def test_build_loads_and_every_rule_call_is_well_formed(self):
        loaded, targets = _evaluate_build()
        self.assertEqual(loaded, LOADS)
        names = {kw["name"] for _, kw in targets}
        pins = _lock()
        for rule, kw in targets:
            name = kw["name"]
            self.assertLessEqual(set(kw), ATTRIBUTES[rule], name)
            self.assertNotEmpty(kw.get("srcs", []), name)
            for src in kw["srcs"]:
                self.assertTrue(os.path.isfile(os.path.join(ROOT, src)), (name, src))
            if rule in ("py_binary", "py_test"):
                self.assertIn(kw["main"], kw["srcs"], name)
            for dep in kw.get("deps", []):
                if isinstance(dep, Requirement):
                    self.assertIn(canonicalize_name(dep.package), pins, (name, dep.package))
                else:
                    self.assertTrue(dep.startswith(":"), (name, dep))
                    self.assertIn(dep[1:], names, (name, dep))
            for label in kw.get("data", []):
                self.assertTrue(label.startswith(":"), (name, label))
                self.assertIn(label[1:], names, (name, label))
            if rule == "py_test":
                self.assertIn(kw["size"], SIZES, name)
                with open(os.path.join(ROOT, kw["main"])) as f:
                    slow = "pytest.mark.slow" in f.read()
                # `--test_tag_filters=-slow` must leave out exactly what `-m "not slow"` does.
                self.assertEqual("slow" in kw.get("tags", []), slow, name)

    def test_module_declares_rules_python_and_the_pip_hub(self):
        calls = _evaluate_module()
        self.assertEqual(
            [kw["name"] for _, kw in calls["bazel_dep"]], ["rules_python"], calls["bazel_dep"]
        )
        self.assertRegex(calls["bazel_dep"][0][1]["version"], r"^\d+\.\d+\.\d+$")
        (_, parse), *more = calls["pip.parse"]
        self.assertEqual(more, [])
        self.assertEqual(parse["hub_name"], "pip")
        self.assertEqual(parse["python_version"], "3.11")
        label = parse["requirements_lock"]
        self.assertTrue(label.startswith("//:"), label)
        self.assertTrue(os.path.isfile(os.path.join(ROOT, label[3:])), label)
        extensions = [args[1] for args, _ in calls["use_extension"]]
        self.assertIn("pip", extensions)
        repos = [(args[0].args[1], *args[1:]) for args, _ in calls["use_repo"]]
        self.assertIn(("pip", "pip"), repos)  # use_repo(pip, "pip"): the hub BUILD loads.

    def test_lock_pins_every_setup_cfg_requirement_within_its_range(self):
        pins = _lock()
        for req in update_build.requirements():
            name = canonicalize_name(req.name)
            self.assertIn(name, pins, f"{req} is not in requirements_lock.txt")
            self.assertTrue(req.specifier.contains(pins[name], prereleases=True), (req, pins[name]))

    def test_lock_matches_setup_cfg_and_what_is_installed(self):
        # The sync check: regenerating from setup.cfg and the venv gives the same pins, so a
        # requirement added to or dropped from setup.cfg without re-locking fails here.
        with open(os.path.join(ROOT, "requirements_lock.txt")) as f:
            self.assertEqual(f.read(), update_build.lock())


if __name__ == "__main__":
    tf.test.main()
