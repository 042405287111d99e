"""Shared test set-up: quiet TensorFlow, quick XLA compiles, and the smoke switch for slow tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# XLA's LLVM back end without its optimisation passes: the tests compile many tiny programs
# and run each a few steps, so compiling dominates (about a third less CPU time). The
# computations are the same; only the machine code is slower. Child processes inherit it.
_XLA_QUICK = "--xla_backend_optimization_level=0"
if _XLA_QUICK not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_QUICK}".strip()

# CI sets ACTIVE_KERAS_SMOKE=1: slow end-to-end tests then run their short smoke configuration.
SMOKE = os.environ.get("ACTIVE_KERAS_SMOKE", "0") == "1"
