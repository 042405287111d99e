"""The benchmark tool end to end in its smoke configuration (real runs, few steps)."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob
import json
import os
import subprocess
import sys
from unittest import mock

import pytest
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from active_keras.training import checkpointing
from tools import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LadderRunTest(tf.test.TestCase, parameterized.TestCase):
    def _run(self):
        ladder = dict(regime="r", config="c", seed=0, budget=10, keep_fraction=0.5)
        return benchmark.Run("r/c/seed0/n10", ["gin/uniform.gin"], [], ladder=ladder)

    def test_a_run_whose_checkpoint_is_of_another_configuration_starts_over_once(self):
        runs_dir, store = (os.path.join(self.get_temp_dir(), d) for d in ("runs", "store"))
        run = self._run()
        checkpoints = os.path.join(runs_dir, run.name, "checkpoints")
        os.makedirs(checkpoints)
        calls = []

        def execute(run, runs_dir, smoke, reuse):
            calls.append(os.path.isdir(checkpoints))
            if len(calls) == 1:
                raise benchmark.RunFailed(checkpointing.EXIT_OTHER_RUN, f"run {run.name} failed")
            os.makedirs(os.path.join(runs_dir, run.name))
            for file in ("metrics.json", "operative_config.gin"):
                with open(os.path.join(runs_dir, run.name, file), "w") as f:
                    f.write("{}")
            return run.name, 1.0, "ran"

        with mock.patch.object(benchmark, "_execute", execute):
            name, _, how = benchmark._execute_ladder(run, runs_dir, store, "abc", reuse=False)
        self.assertEqual(calls, [True, False])  # Refused the checkpoint, then ran without it.
        self.assertIn("from scratch", how)
        # The old folder is moved aside, not deleted.
        aside = glob.glob(os.path.join(runs_dir, "r", "c", "seed0", "n10.other-*", "checkpoints"))
        self.assertLen(aside, 1)
        with open(os.path.join(store, run.name, "run.json")) as f:
            self.assertEqual(json.load(f)["config_hash"], "abc")

    @parameterized.named_parameters(("oom_kill", -9), ("nan_or_other_error", 1))
    def test_any_other_failure_is_raised_and_keeps_the_checkpoints(self, returncode):
        runs_dir = os.path.join(self.get_temp_dir(), "runs")
        checkpoints = os.path.join(runs_dir, self._run().name, "checkpoints")
        os.makedirs(checkpoints)
        failing = mock.Mock(side_effect=benchmark.RunFailed(returncode, "run r/c/seed0/n10 failed"))
        with mock.patch.object(benchmark, "_execute", failing):
            with self.assertRaisesRegex(RuntimeError, "failed"):
                benchmark._execute_ladder(self._run(), runs_dir, runs_dir, "abc", reuse=False)
        self.assertEqual(failing.call_count, 1)
        self.assertTrue(os.path.isdir(checkpoints))  # For the next sitting to resume from.


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
