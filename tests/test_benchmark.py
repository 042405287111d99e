"""The benchmark tool end to end in its smoke configuration (real runs, few steps)."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchmarkTest(tf.test.TestCase):
    @pytest.mark.slow
    def test_classact_benchmark_smoke_writes_results_and_figure(self):
        tmp_dir = self.get_temp_dir()
        cmd = [
            sys.executable,
            "tools/benchmark.py",
            "--suite=classact_constant_lr",
            "--smoke",
            "--only=noise20/learnability_sample_lr1e-3",
            f"--runs_dir={tmp_dir}/runs",
            f"--out_dir={tmp_dir}/results",
        ]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-3000:])
        with open(os.path.join(tmp_dir, "results", "classact_constant_lr.json")) as f:
            results = json.load(f)
        group = results["groups"]["noise20"]
        self.assertTrue(group["baseline"].startswith("noise20/uniform"))
        row = group["runs"]["noise20/learnability_sample_lr1e-3"]
        self.assertEqual(row["target"], group["runs"][group["baseline"]]["run_best"])
        self.assertTrue(row["update_speedup"] is None or row["update_speedup"] > 0)
        with Image.open(os.path.join(tmp_dir, "results", "classact_constant_lr.png")) as image:
            self.assertGreater(image.size[0], 100)


if __name__ == "__main__":
    tf.test.main()
