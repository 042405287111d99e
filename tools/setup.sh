#!/usr/bin/env bash
# Installs what active_keras needs, only what is missing: the Debian data packages,
# a virtual environment in .venv and the pip packages (setup.cfg's ranges, at the versions of
# requirements_lock.txt).
# `--oldest`: the second environment CI tests in, .venv-oldest, with the oldest supported
# TensorFlow / Keras (requirements_oldest.txt: setup.cfg's lower bounds; pip resolves the rest).
# Idempotent and quiet when everything is already there. Source it or run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.venv
constraints=requirements_lock.txt
if [ "${1:-}" = "--oldest" ]; then
  venv=.venv-oldest
  constraints=requirements_oldest.txt
fi

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
[ -d /usr/share/openclipart/png ] || need_apt+=(openclipart-png)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian data packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x $venv/bin/python ]; then
  echo "setup: creating $venv with $($PY --version)"
  "$PY" -m venv $venv
fi
# Reinstall when setup.cfg changes (its hash is stamped after a good install).
stamp=$venv/.active_keras_setup
want=$(sha256sum setup.cfg pyproject.toml $constraints | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pip packages into $venv (a few minutes the first time)"
  $venv/bin/python -m pip install -q --upgrade pip
  # Constrained to the lock file: every machine, CI included, gets the versions it names.
  $venv/bin/python -m pip install -q -c $constraints -e ".[test]"
  echo "$want" > "$stamp"
fi
