"""The benchmark tool end to end in its smoke configuration (real runs, few steps)."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_classact_benchmark_smoke_writes_results_and_figure(tmp_path):
    cmd = [
        sys.executable,
        "tools/benchmark.py",
        "--suite=classact_constant_lr",
        "--smoke",
        "--only=noise20/learnability_sample_lr1e-3",
        f"--runs_dir={tmp_path}/runs",
        f"--out_dir={tmp_path}/results",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(os.path.join(tmp_path, "results", "classact_constant_lr.json")) as f:
        results = json.load(f)
    group = results["groups"]["noise20"]
    assert group["baseline"].startswith("noise20/uniform")
    row = group["runs"]["noise20/learnability_sample_lr1e-3"]
    assert row["target"] == group["runs"][group["baseline"]]["run_best"]
    assert row["update_speedup"] is None or row["update_speedup"] > 0
    with Image.open(os.path.join(tmp_path, "results", "classact_constant_lr.png")) as image:
        assert image.size[0] > 100
