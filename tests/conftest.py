"""Shared test set-up: quiet TensorFlow, and the smoke switch for slow tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# CI sets ACTIVE_KERAS_SMOKE=1: slow end-to-end tests then run their short smoke configuration.
SMOKE = os.environ.get("ACTIVE_KERAS_SMOKE", "0") == "1"
