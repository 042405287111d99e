#!/usr/bin/env bash
# The test suite: lint, fast tests, then the slow end-to-end tests in their short
# smoke configuration (ACTIVE_KERAS_SMOKE=1), then the selection core's fast tests again on
# the oldest supported TensorFlow / Keras (.venv-oldest). `--fast` skips the last two.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
oldest_pid=""
if [ "${1:-}" != "--fast" ]; then
  # The second environment installs (mostly waiting on pip) while the main tests run.
  bash tools/setup.sh --oldest > .venv-oldest.log 2>&1 &
  oldest_pid=$!
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# The selection core: what must work on every supported TensorFlow / Keras.
OLDEST_CORE=(tests/test_public_api.py tests/test_selectors.py tests/test_policies.py
  tests/test_active_learner.py tests/test_keras_native.py)
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two tiers, each on every core (pytest-xdist; one class per worker, so that a class's
# set-up runs once). Runs shared by several test files are built once, into the cache of
# tests/cli_helpers.py, by whichever worker first needs them; the slow tier reuses them.
PARALLEL=(-n auto --maxprocesses=4 --dist loadscope)
.venv/bin/python -m pytest -q "${PARALLEL[@]}" -m "not slow" --durations=15
# Every test file also runs on its own (`python tests/test_x.py`, as Bazel runs it): keep one
# fast one running that way so that the standalone set-up cannot rot.
.venv/bin/python tests/test_selectors.py
if [ "${1:-}" != "--fast" ]; then
  rc=0
  ACTIVE_KERAS_SMOKE=1 .venv/bin/python -m pytest -q "${PARALLEL[@]}" -m slow --durations=10 || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]  # 5: no slow tests collected.
  # The lower bounds of setup.cfg's ranges (requirements_oldest.txt) hold too.
  wait "$oldest_pid" || { cat .venv-oldest.log; exit 1; }
  .venv-oldest/bin/python -m pytest -q -m "not slow" "${OLDEST_CORE[@]}"
fi
