#!/usr/bin/env bash
# The main job: ClassAct vs uniform on Fashion-MNIST with 20% label noise; prints the
# comparison (updates and FLOPs to reach uniform's best test accuracy). Extra flags
# are passed to `python -m active_keras.main` (--verbose also prints TensorFlow's own log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
exec .venv/bin/python -m active_keras.main --gin_file=gin/classact.gin \
  --compare_with=gin/uniform.gin --model_dir=runs/classact \
  --gin_bindings="run.num_steps = 1500" "$@"
