"""active_keras: train on what is worth learning.

Online batch selection for Keras 3 on TensorFlow: ClassAct and ActiveCLIP from
"Bad Students Make Great Teachers" (Evans et al., 2023).

`ActiveLearner`, `policies` and `selectors` are imported on first use, so that
`import active_keras` does not import TensorFlow: the command line
(`active_keras.main`) sets up quiet logging before TensorFlow starts
(`active_keras.quiet`).
"""

import importlib
import typing

if typing.TYPE_CHECKING:  # For type checkers and tools/update_build.py; at run time, lazily.
    from active_keras.selection import policies, selectors
    from active_keras.training.active_learner import ActiveLearner

__all__ = ["ActiveLearner", "policies", "selectors"]
__version__ = "0.1.0"

_LAZY = {
    "ActiveLearner": ("active_keras.training.active_learner", "ActiveLearner"),
    "policies": ("active_keras.selection.policies", None),
    "selectors": ("active_keras.selection.selectors", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'active_keras' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = getattr(module, attribute) if attribute else module
    globals()[name] = value
    return value
