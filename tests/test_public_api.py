"""The package uses only public Keras and TensorFlow API.

A scan of `active_keras/`'s syntax trees refuses what ties the package to one
Keras or TensorFlow release: imports of `keras.src` (or `tensorflow.python`),
attribute reads with a leading underscore on objects that are not ours (also
through `getattr` / `hasattr` / `setattr` with a literal name),
`object.__setattr__`, `__dir__` overrides, and (by importing the modules)
overrides of a Keras or TensorFlow class's private methods. Allowed: `self` /
`cls` attributes that our own class (or an in-package base) defines or
assigns, and the private names of our own modules.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ast
import glob
import importlib
import textwrap

import tensorflow as tf
from absl.testing import parameterized

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "active_keras")
PRIVATE_MODULES = ("keras.src", "tensorflow.python")
NAME_FUNCTIONS = ("getattr", "hasattr", "setattr", "delattr")


def _private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_modules(tree):
    """Names bound to modules (or names) imported from `active_keras` in `tree`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("active_keras"):
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("active_keras"):
                    names.add(a.asname or a.name.split(".")[0])
    return names


def _defined_in(class_node):
    """Attribute names a class defines: its methods, class-level names, `self.x = ...`."""
    names = set()
    for node in ast.walk(class_node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Name) and node in class_node.body:
                    names.add(t.id)
                elif (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id in ("self", "cls")
                ):
                    names.add(t.attr)
    return names


def _class_attributes(trees):
    """`{class name: attribute names}` over the package, with in-package bases' names."""
    classes = {}
    bases = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, set()).update(_defined_in(node))
                bases.setdefault(node.name, set()).update(
                    b.id if isinstance(b, ast.Name) else b.attr
                    for b in node.bases
                    if isinstance(b, (ast.Name, ast.Attribute))
                )

    def closure(name, seen):
        names = set(classes.get(name, ()))
        for base in bases.get(name, ()):
            if base in classes and base not in seen:
                names |= closure(base, seen | {base})
        return names

    return {name: closure(name, {name}) for name in classes}


class _Scan(ast.NodeVisitor):
    def __init__(self, path, tree, class_attributes):
        self.path = path
        self.own_modules = _own_modules(tree)
        self.class_attributes = class_attributes
        self.classes = []  # The enclosing class names.
        self.found = []

    def _report(self, node, what):
        self.found.append(f"{self.path}:{node.lineno}: {what}")

    def _is_ours(self, value, name):
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            return bool(self.classes) and name in self.class_attributes[self.classes[-1]]
        return isinstance(value, ast.Name) and value.id in self.own_modules

    def visit_ClassDef(self, node):
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node):
        if node.name == "__dir__" and self.classes:
            self._report(node, "a __dir__ override")
        self.generic_visit(node)

    def visit_Import(self, node):
        for a in node.names:
            if a.name.startswith(PRIVATE_MODULES):
                self._report(node, f"import {a.name}")

    def visit_ImportFrom(self, node):
        if (node.module or "").startswith(PRIVATE_MODULES):
            self._report(node, f"from {node.module} import ...")

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id == "object":
            if node.attr == "__setattr__":
                self._report(node, "object.__setattr__")
        elif _private(node.attr) and not self._is_ours(node.value, node.attr):
            self._report(node, f"{ast.unparse(node)}: a private attribute of an object not ours")
        self.generic_visit(node)

    def visit_Call(self, node):
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in NAME_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not self._is_ours(node.args[0], node.args[1].value)
        ):
            self._report(node, f"{ast.unparse(node)}: a private attribute by name")
        self.generic_visit(node)


def scan_sources(sources):
    """Violations in `{path: source}`: a list of "path:line: what"."""
    trees = {path: ast.parse(source, path) for path, source in sources.items()}
    class_attributes = _class_attributes(trees.values())
    found = []
    for path, tree in trees.items():
        scan = _Scan(path, tree, class_attributes)
        scan.visit(tree)
        found += scan.found
    return found


def package_sources(package=PACKAGE):
    """`{path relative to the root: source}` of every module of `package`."""
    paths = sorted(glob.glob(os.path.join(package, "**", "*.py"), recursive=True))
    root = os.path.dirname(package)
    return {os.path.relpath(p, root): open(p).read() for p in paths}


def private_overrides(module_names):
    """Private members of our classes (mixins included) that override a Keras / TF class's."""
    found = set()
    for name in module_names:
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            ours = [c for c in cls.__mro__ if _is_ours(c)]
            theirs = [c for c in cls.__mro__ if not _is_ours(c) and c is not object]
            for own in ours:
                for attr in vars(own):
                    if not _private(attr) or attr == "_abc_impl":  # Set by `abc` on every ABC.
                        continue
                    for base in theirs:
                        if attr in vars(base):
                            found.add(
                                f"{own.__module__}.{own.__name__}.{attr} overrides "
                                f"{base.__name__}'s"
                            )
    return sorted(found)


def _is_ours(cls):
    return cls.__module__.startswith(("active_keras", "tests", "__main__"))


def _module_names():
    names = []
    for path in package_sources():
        module = path[: -len(".py")].replace(os.sep, ".")
        names.append(module[: -len(".__init__")] if module.endswith(".__init__") else module)
    return names


class PublicApiTest(parameterized.TestCase, tf.test.TestCase):
    def test_the_package_uses_public_api_only(self):
        found = scan_sources(package_sources())
        self.assertEqual(found, [], "\n".join(found))

    def test_no_private_method_of_keras_or_tensorflow_is_overridden(self):
        found = private_overrides(_module_names())
        self.assertEqual(found, [], "\n".join(found))

    # The scan itself: each kind of private use it must catch (all were in the package once).
    @parameterized.named_parameters(
        ("keras_src_import", "from keras.src import tree\n"),
        ("keras_src_module", "import keras.src.losses.loss\n"),
        (
            "private_attribute",
            "def f(strategy):\n    return strategy.extended._in_multi_worker_mode()\n",
        ),
        ("class_attribute", "import tensorflow as tf\ntf.distribute.MirroredStrategy._base += 1\n"),
        ("by_name", "def f(model):\n    return getattr(model, '_records_ids', False)\n"),
        (
            "object_setattr",
            "class A:\n    def f(self):\n        object.__setattr__(self, 'x', 1)\n",
        ),
        ("dir_override", "class A:\n    def __dir__(self):\n        return []\n"),
        (
            "inherited_private",
            "import keras\nclass M(keras.Model):\n"
            "    def f(self):\n        return self._compile_loss\n",
        ),
        (
            "super_private",
            "import keras\nclass M(keras.Model):\n"
            "    def _build(self):\n        super()._build()\n",
        ),
    )
    def test_the_scan_finds(self, source):
        self.assertNotEmpty(scan_sources({"example.py": source}))

    def test_the_scan_allows_our_own_private_names(self):
        source = textwrap.dedent(
            """
            import keras
            from active_keras.training import replicas

            class Base(keras.Model):
                def __init__(self):
                    super().__init__()
                    self._mine = 1

            class Child(Base):
                def _helper(self):
                    return self._mine + replicas._multi_worker(None)

                def f(self):
                    return self._helper() + getattr(self, "_mine")
            """
        )
        self.assertEqual(scan_sources({"example.py": source}), [])

    def test_private_overrides_are_found(self):
        self.assertNotEmpty(private_overrides(["tests.test_public_api"]))


class _PrivateOverride(tf.Module):
    """Overrides a private TensorFlow method: what `private_overrides` must find."""

    def _trackable_children(self, *args, **kwargs):
        return super()._trackable_children(*args, **kwargs)


if __name__ == "__main__":
    tf.test.main()
