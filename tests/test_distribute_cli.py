"""The CLI under tf.distribute: Mirrored on two logical CPUs, MultiWorker with two processes."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.cli_helpers import ROOT, pretrain_reference
from tests.cli_helpers import cmd as _cmd
from tests.cli_helpers import env as _env
from tests.processes import ProcessGroup, local_cluster, worker_env


class DistributeCliTest(tf.test.TestCase):
    @pytest.mark.slow
    def test_mirrored_cli_run_on_two_logical_cpus(self):
        tmp_dir = self.get_temp_dir()
        ref = os.path.join(tmp_dir, "ref.keras")
        proc = subprocess.run(
            _cmd(os.path.join(tmp_dir, "run"), ref, "--strategy=mirrored", "--logical_cpus=2"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env=_env(),
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(os.path.join(tmp_dir, "run", "metrics.json")) as f:
            curve = json.load(f)["curve"]
        self.assertEqual([p["step"] for p in curve], [0, 6, 12])
        self.assertTrue(np.isfinite(curve[-1]["test_accuracy"]))

    @pytest.mark.slow
    def test_multi_worker_cli_run_ends_with_identical_weights(self):
        tmp_dir = self.get_temp_dir()
        ref = pretrain_reference(tmp_dir)  # Trained once, in the shared cache.
        cluster = local_cluster(2)
        model_dir = os.path.join(tmp_dir, "run")
        with ProcessGroup(os.path.join(tmp_dir, "logs")) as workers:
            for i in range(2):
                workers.start(
                    f"worker{i}",
                    _cmd(model_dir, ref, "--strategy=multi_worker_mirrored"),
                    cwd=ROOT,
                    # All of TensorFlow's log, to see the chief's collective executor.
                    env=worker_env(cluster, i, TF_CPP_MIN_LOG_LEVEL="0"),
                )
            workers.wait(timeout=900)  # Fails at once, with both outputs, if a worker fails.
            # The workers leave together: the chief saw no peer gone after its last step.
            self.assertNotIn("unhealthy", workers.output("worker0"))
            self.assertNotIn("StartAbort", workers.output("worker0"))
        chief = keras.models.load_model(os.path.join(model_dir, "learner.keras"))
        other = keras.models.load_model(os.path.join(model_dir, "learner.worker1.keras"))
        for a, b in zip(chief.weights, other.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        with open(os.path.join(model_dir, "metrics.json")) as f:
            self.assertEqual(json.load(f)["curve"][-1]["step"], 12)

    @pytest.mark.slow
    def test_a_worker_whose_peer_never_starts_exits_naming_it(self):
        tmp_dir = self.get_temp_dir()
        # Worker 1 of a two-worker cluster, alone: it must not wait without end.
        cluster = local_cluster(2)
        cmd = _cmd(os.path.join(tmp_dir, "run"), os.path.join(tmp_dir, "ref.keras"))
        cmd += ["--strategy=multi_worker_mirrored", "--peer_timeout=20"]
        with ProcessGroup(os.path.join(tmp_dir, "logs")) as workers:
            workers.start("worker1", cmd, cwd=ROOT, env=worker_env(cluster, 1))
            # Start-up (TensorFlow's import), then 20 s: about 30 s on an idle 2-core machine.
            status = workers.wait_exit("worker1", timeout=240)
            out = workers.output("worker1")
        # Killed by the watchdog; its supervising parent (the command) exits 1.
        self.assertEqual(status, 1, out[-3000:])
        self.assertTrue(out.strip().splitlines()[-1].startswith("error: "), out[-3000:])
        expected = (
            "error: the multi-worker cluster did not come together within 20 s: "
            f"worker 0 ({cluster['worker'][0]}) is not reachable"
        )
        self.assertIn(expected, out, out[-3000:])


if __name__ == "__main__":
    tf.test.main()
