"""A MultiWorkerMirrored CLI run killed mid-way resumes from its last checkpoint.

Two local worker processes (TF_CONFIG on 127.0.0.1) train; once the chief has
written a checkpoint, worker 1 is SIGKILLed. The chief must then end by itself,
with an error that names worker 1, instead of waiting for it. Restarting both
with the same command must resume from the chief's last checkpoint, not from
step 0, reach the configured final step, leave both workers with identical
learners, and write a metric curve without duplicated points.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.cli_helpers import BINDINGS, ROOT, pretrain_reference
from tests.cli_helpers import cmd as _cmd
from tests.processes import ProcessGroup, local_cluster, worker_env

NUM_STEPS = 24
RUN = [b for b in BINDINGS if not b.startswith(("run.num_steps", "run.eval_every"))] + [
    f"run.num_steps = {NUM_STEPS}",
    "run.eval_every = 6",
    "run.checkpoint_every = 3",
]


def _command(model_dir, ref):
    return _cmd(
        model_dir, ref, "--strategy=multi_worker_mirrored", "--peer_timeout=60", bindings=RUN
    )


def _latest_step(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return None if path is None else int(path.rsplit("-", 1)[1])


def _start_workers(group, cmd):
    # Fresh ports for every start: after a real preemption the restarted cluster may
    # come back at other addresses too.
    cluster = local_cluster(2)
    for i in range(2):
        group.start(f"worker{i}", cmd, cwd=ROOT, env=worker_env(cluster, i))
    return cluster


class MultiWorkerResumeTest(tf.test.TestCase):
    @pytest.mark.slow
    def test_killed_multi_worker_run_resumes_from_its_last_checkpoint(self):
        tmp_dir = self.get_temp_dir()
        ref = pretrain_reference(tmp_dir)  # Both workers, both runs, load the same file.
        model_dir = os.path.join(tmp_dir, "run")
        cmd = _command(model_dir, ref)

        # --- First run: worker 1 is killed once the chief has a checkpoint.
        with ProcessGroup(os.path.join(tmp_dir, "first")) as first:
            cluster = _start_workers(first, cmd)
            first.wait_until(
                lambda: (_latest_step(model_dir) or 0) >= 3, 600, "the chief's first checkpoint"
            )
            first.kill("worker1")
            # The chief fails out of its next collective (or times out in it after 60 s).
            status = first.wait_exit("worker0", timeout=300)
            chief_out = first.output("worker0")
        self.assertEqual(status, 1, chief_out[-3000:])
        self.assertIn("error: lost contact with the other workers", chief_out, chief_out[-3000:])
        self.assertIn(
            f"worker 1 ({cluster['worker'][1]}) is not reachable", chief_out, chief_out[-3000:]
        )
        at_kill = _latest_step(model_dir)
        self.assertIsNotNone(at_kill, (at_kill, chief_out[-3000:]))
        self.assertTrue(3 <= at_kill < NUM_STEPS, (at_kill, chief_out[-3000:]))

        # --- Second run: both workers restarted with the same command.
        with ProcessGroup(os.path.join(tmp_dir, "resumed")) as second:
            _start_workers(second, cmd)
            second.wait(timeout=900)  # Fails at once, with both outputs, if a worker fails.
            outs = [second.output(f"worker{i}") for i in range(2)]

        # Resumed from the chief's last checkpoint, not from step 0.
        resumed_from = os.path.join(model_dir, "checkpoints", f"ckpt-{at_kill}")
        self.assertIn(
            f"checkpoint: resumed from {resumed_from} at step {at_kill}", outs[0], outs[0][-3000:]
        )
        self.assertIn(f"at step {at_kill}", outs[1], outs[1][-3000:])
        self.assertEqual(_latest_step(model_dir), NUM_STEPS)

        with open(os.path.join(model_dir, "metrics.json")) as f:
            steps = [p["step"] for p in json.load(f)["curve"]]
        self.assertEqual(steps, [0, 6, 12, 18, 24])  # No duplicated or missing points.

        chief = keras.models.load_model(os.path.join(model_dir, "learner.keras"))
        other = keras.models.load_model(os.path.join(model_dir, "learner.worker1.keras"))
        for a, b in zip(chief.weights, other.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


if __name__ == "__main__":
    tf.test.main()
