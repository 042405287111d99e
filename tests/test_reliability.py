"""Reliability: checkpoints and exact resume after a kill, determinism, and clear failures.

The end-to-end tests run the real command line on the tiny digits configuration
of `tests/cli_helpers.py`: one uninterrupted run is the reference every other run
(a second uninterrupted one, a killed-and-resumed one) must reproduce exactly.
Every run loads the same trained reference (`tiny_reference`); the uninterrupted
run is built once into the cache of `tests/cli_helpers.py` and only read here.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import signal
import subprocess
import threading
import time

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from active_keras import ActiveLearner, train
from active_keras import main as main_lib
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from active_keras.training import checkpointing, loop
from active_keras.training.callbacks import NonFiniteLossError, StopOnNaN
from tests.cli_helpers import ROOT, TINY, cached, cmd, copy_of, env, run_or_raise, tiny_reference

# 18 steps, evaluated every 6, checkpointed every 3: resuming from a checkpoint
# in the middle of an evaluation interval is the harder case.
RUN = [b for b in TINY if not b.startswith(("run.num_steps", "run.eval_every"))] + [
    "run.num_steps = 18",
    "run.eval_every = 6",
    "run.checkpoint_every = 3",
]
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _command(tmp_path, model_dir):
    """The run's command line, loading the reference `tmp_path/reference.keras`."""
    return cmd(model_dir, os.path.join(tmp_path, "reference.keras"), bindings=RUN)


def _uninterrupted_run():
    """`(folder, model_dir, stdout)` of one whole run, built once into the shared cache."""

    def build(folder):
        tiny_reference(folder)
        run_or_raise(_command(folder, os.path.join(folder, "whole")), folder)

    folder = cached("reliability_run", build, key=[RUN])
    with open(os.path.join(folder, "stdout.txt")) as f:
        return folder, os.path.join(folder, "whole"), f.read()


def _metrics(model_dir):
    with open(os.path.join(model_dir, "metrics.json")) as f:
        return json.load(f)


def _weights(model_dir):
    return keras.models.load_model(os.path.join(model_dir, "learner.keras")).get_weights()


def _latest_step(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return None if path is None else int(path.rsplit("-", 1)[1])


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=8, name="learner")
    reference = cnn.cnn_classifier((8, 8, 1), 10, widths=(2,), dense_units=0, name="reference")
    model = ActiveLearner(learner, reference, selection="sample", super_batch_size=32, seed=seed)
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"], jit_compile=False)
    return model


class UninterruptedRunTest(tf.test.TestCase):
    """Tests against one whole run (shared, read only: other runs go to a temp dir)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.uninterrupted = _uninterrupted_run()

    def _own_reference(self):
        """A temp dir holding a copy of the reference every run here loads."""
        tmp = self.get_temp_dir()
        tiny_reference(tmp)
        return tmp

    def test_checkpoints_hold_the_run_but_not_the_frozen_reference(self):
        tmp, model_dir, stdout = self.uninterrupted
        curve = _metrics(model_dir)["curve"]
        self.assertEqual([p["step"] for p in curve], [0, 6, 12, 18])
        self.assertEqual(_latest_step(model_dir), 18)  # The end of the run is checkpointed.
        path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
        names = [n for n, _ in tf.train.list_variables(path)]
        tops = {n.split("/")[0] for n in names}
        self.assertLessEqual(
            {"learner", "actor", "optimizer", "actor_optimizer", "sampling_seed", "step"}, tops
        )
        self.assertLessEqual({"curve", "metrics"}, tops)
        self.assertFalse([n for n in names if "reference" in n])
        reference = keras.models.load_model(os.path.join(tmp, "reference.keras"))
        actor_values = [n for n in names if n.startswith("actor/")]
        # The actor's, not the reference's too.
        self.assertEqual(len(actor_values), len(reference.weights))
        reader = tf.train.load_checkpoint(path)
        saved_curve = json.loads(reader.get_tensor("curve/.ATTRIBUTES/py_state").decode())
        self.assertEqual(saved_curve, curve)
        self.assertNotIn("checkpoint: resumed", stdout)
        with open(os.path.join(model_dir, "timing.json")) as f:
            timing = json.load(f)
        self.assertEqual(timing["sittings"], 1)
        self.assertGreater(timing["wall_seconds"], 0)

    @pytest.mark.slow  # One more CLI run; the resume test below also needs determinism.
    def test_same_seed_same_run(self):
        _, model_dir, _ = self.uninterrupted
        tmp = self._own_reference()
        again = os.path.join(tmp, "again")
        run_or_raise(_command(tmp, again))
        first, second = _metrics(model_dir), _metrics(again)
        # Selection statistics, losses and test metrics, every point.
        self.assertEqual(first, second)
        for a, b in zip(_weights(model_dir), _weights(again), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_killed_run_resumes_from_its_last_checkpoint_exactly(self):
        _, model_dir, _ = self.uninterrupted
        tmp = self._own_reference()
        killed = os.path.join(tmp, "killed")
        command = _command(tmp, killed)
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
        )
        deadline = time.time() + 300
        while (_latest_step(killed) or 0) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        self.assertIsNone(proc.poll(), "the run ended before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = _latest_step(killed)
        self.assertIsNotNone(at_kill)
        self.assertTrue(3 <= at_kill < 18)

        resumed = run_or_raise(command)
        # No checkpoint lost: the run continues from the last one written before the kill.
        self.assertIn(
            f"resumed from {os.path.join(killed, 'checkpoints', f'ckpt-{at_kill}')}", resumed.stdout
        )
        self.assertIn(f"at step {at_kill}", resumed.stdout)
        self.assertIn("reference: loaded", resumed.stdout)  # From its own file, not retrained.
        metrics = _metrics(killed)
        steps = [p["step"] for p in metrics["curve"]]
        self.assertEqual(steps, [0, 6, 12, 18])  # No duplicated or missing points.
        # Bit for bit the uninterrupted run: same data, selections, optimizer states, fit metrics.
        self.assertEqual(metrics, _metrics(model_dir))
        # The run's time adds up both sittings (timing.json is not part of metrics.json).
        with open(os.path.join(killed, "timing.json")) as f:
            self.assertEqual(json.load(f)["sittings"], 2)
        for a, b in zip(_weights(model_dir), _weights(killed), strict=True):
            np.testing.assert_array_equal(a, b)

    @pytest.mark.slow  # One more CLI run (already the shortest: nothing to shrink for smoke).
    def test_rerunning_a_finished_run_trains_nothing(self):
        tmp = self._own_reference()
        model_dir = copy_of(self.uninterrupted[1], tmp)  # The rerun writes into it.
        before = _metrics(model_dir)
        done = run_or_raise(_command(tmp, model_dir))
        self.assertIn("at step 18", done.stdout)
        self.assertNotRegex(done.stdout, r"(?m)^step \d+")  # No evaluation: nothing trained.
        self.assertEqual(_metrics(model_dir), before)


class ReliabilityTest(tf.test.TestCase):
    def test_reference_of_other_data_is_refused(self):
        tmp_dir = self.get_temp_dir()
        ref = os.path.join(tmp_dir, "reference.keras")
        gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
        bindings = TINY + [f"run.reference_path = '{ref}'"]
        for model, expected in [
            (cnn.cnn_classifier((28, 28, 1), 10, widths=(4,)), r"takes inputs \(28, 28, 1\)"),
            (cnn.cnn_classifier((8, 8, 1), 3, widths=(4,)), "predicts 3 classes"),
        ]:
            model.save(ref)
            try:
                with self.assertRaisesRegex(ValueError, expected + ".*Retrain it for this data"):
                    main_lib.run_config(gin_files, bindings, os.path.join(tmp_dir, "run"))
            finally:
                gin.clear_config()

    def test_unknown_policy_through_the_config_names_the_choices(self):
        tmp_dir = self.get_temp_dir()
        gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
        try:
            with self.assertRaisesRegex(ValueError, "'learnabilty'.*learnability"):
                main_lib.run_config(
                    gin_files,
                    TINY + ["ActiveLearner.policy = 'learnabilty'"],
                    os.path.join(tmp_dir, "run"),
                )
        finally:
            gin.clear_config()

    def test_checkpoint_of_another_run_is_refused(self):
        tmp_dir = self.get_temp_dir()
        directory = os.path.join(tmp_dir, "checkpoints")
        ckpt = checkpointing.Checkpointer(directory, _tiny_model(), every=1, facts={"seed": 0})
        ckpt.save()
        other = checkpointing.Checkpointer(directory, _tiny_model(), every=1, facts={"seed": 1})
        with self.assertRaisesRegex(ValueError, "seed=0.*this run has seed=1.*delete"):
            other.restore()
        keras.utils.set_random_seed(0)
        wider = ActiveLearner(
            cnn.cnn_classifier((8, 8, 1), 10, widths=(6,), dense_units=8, name="learner"),
            cnn.cnn_classifier((8, 8, 1), 10, widths=(2,), dense_units=0, name="reference"),
        )
        wider.compile(optimizer="adam", loss=LOSS)
        mismatched = checkpointing.Checkpointer(directory, wider, every=1, facts={"seed": 0})
        with self.assertRaisesRegex(ValueError, "does not match this run's models"):
            mismatched.restore()

    def test_restore_brings_back_every_state(self):
        tmp_dir = self.get_temp_dir()
        directory = os.path.join(tmp_dir, "checkpoints")
        model = _tiny_model(seed=0)
        model.seed_generator.next()  # Move the sampling RNG off its initial state.
        model.optimizer.iterations.assign(7)
        ckpt = checkpointing.Checkpointer(directory, model, every=5)
        ckpt.step = 5
        ckpt.track_curve(lambda: [{"step": 0}, {"step": 5}])
        ckpt.save()
        fresh = _tiny_model(seed=1)
        restored = checkpointing.Checkpointer(directory, fresh, every=5)
        self.assertEqual(restored.restore(), (5, [{"step": 0}, {"step": 5}]))
        saved = model.learner.weights + model.actor.weights
        for a, b in zip(saved, fresh.learner.weights + fresh.actor.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(model.seed_generator.state, fresh.seed_generator.state)
        self.assertEqual(int(fresh.optimizer.iterations), 7)
        self.assertEqual(
            checkpointing.Checkpointer(os.path.join(tmp_dir, "none"), fresh, every=5).restore(),
            (0, []),
        )

    def test_segments_finish_a_half_done_interval_first(self):
        self.assertEqual(loop.segments(0, 12, 6), [(0, 0, 2, 6)])
        self.assertEqual(loop.segments(8, 18, 6), [(8, 1, 2, 4), (12, 2, 3, 6)])
        self.assertEqual(loop.segments(6, 12, 6), [(6, 1, 2, 6)])
        self.assertEqual(loop.segments(12, 12, 6), [])

    def test_training_order_is_a_function_of_seed_and_step(self):
        data = ImageClassificationData("digits", heldout_size=300)
        n = len(data.splits["train"])

        def ids(seed, start, count):
            ds = data.dataset("train", 32, shuffle=True, repeat=True, seed=seed, start_batch=start)
            return np.concatenate([m["example_id"].numpy() for _, _, m in ds.take(count)])

        stream = ids(0, 0, 80)
        # Each pass: a permutation.
        self.assertEqual(sorted(stream[:n]), sorted(data.splits["train"].ids))
        self.assertTrue((stream[:n] != stream[n : 2 * n]).any())  # Reshuffled every pass.
        np.testing.assert_array_equal(ids(0, 57, 23), stream[57 * 32 :])  # Resume mid-pass.
        self.assertTrue((ids(1, 0, 5) != stream[:160]).any())
        start = time.time()
        ids(0, 10**9, 1)  # Starting far into a long run reads nothing before it.
        self.assertLess(time.time() - start, 5)

    def test_stop_on_nan_counts_from_the_resumed_step(self):
        # The step is the optimizer's update count, restored with it on resume.
        model = _tiny_model()
        callback = StopOnNaN()
        callback.set_model(model)
        model.optimizer.iterations.assign(41)
        callback.on_train_batch_end(0, {"loss": 1.0})
        model.optimizer.iterations.assign(42)
        with self.assertRaisesRegex(NonFiniteLossError, "nan at step 42"):
            callback.on_train_batch_end(1, {"loss": float("nan")})

    def test_workers_sharing_a_model_dir_pass_its_write_check_together(self):
        tmp_dir = self.get_temp_dir()
        # The workers of a multi-worker run start together and check their shared model_dir at
        # the same moment. With one probe file name, one removed the other's probe, and the
        # other exited at start-up with "not writable (No such file or directory)", leaving its
        # peer waiting: the flaky multi-worker test. Threads reproduce that overlap at once.
        shared = os.path.join(tmp_dir, "shared")
        errors = []

        def check():
            for _ in range(300):
                try:
                    train._writable_dir(shared)
                except PermissionError as e:
                    errors.append(str(e))

        threads = [threading.Thread(target=check) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(os.listdir(shared), [])  # No probe left behind.


if __name__ == "__main__":
    tf.test.main()
