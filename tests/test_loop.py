"""The one training loop: the reference's pre-training and a replay resume after an interruption.

The active run's resume (a real kill of a CLI run) is in tests/test_reliability.py.
Here each run is interrupted in-process at a fixed step by an extra callback
(the variant's `more_callbacks` hook), then run again from scratch: a new
process would start the same way, from the checkpoints on disk alone.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib
import io
import json
from unittest import mock

import gin
import keras
import numpy as np
import tensorflow as tf

from active_keras import main as main_lib
from active_keras import train
from active_keras.training import callbacks as callbacks_lib
from active_keras.training import checkpointing, loop, replay
from tests.cli_helpers import ROOT, TINY, tiny_run

BINDINGS = [*TINY, "run.write_report = False", "run.selection_log_every = 0", "run.verbose = 0"]


class _Killed(Exception):
    """Stands for a kill: raised by `_KillAt` in the middle of training."""


class _KillAt(keras.callbacks.Callback):
    """Stops the run with `_Killed` once `step` steps are done (after their callbacks)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if callbacks_lib.step_of(self.model) == self.step:
            raise _Killed(f"killed at step {self.step}")


def _latest_step(directory):
    path = tf.train.latest_checkpoint(directory)
    return None if path is None else int(path.rsplit("-", 1)[1])


def _run(gin_file, bindings, model_dir):
    """`main.run_config` of `gin/<gin_file>` with `bindings`; returns (result, stdout)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = main_lib.run_config(
                [os.path.join(ROOT, "gin", gin_file)], BINDINGS + bindings, model_dir
            )
    finally:
        gin.clear_config()
    return result, out.getvalue()


class LoopTest(tf.test.TestCase):
    def test_segments_cover_the_rest_of_the_run(self):
        self.assertEqual(loop.segments(0, 12, 6), [(0, 0, 2, 6)])
        self.assertEqual(loop.segments(9, 12, 6), [(9, 1, 2, 3)])
        with self.assertRaisesRegex(ValueError, "num_steps=10 must be a multiple of eval_every=4"):
            loop.check_steps(10, 4)

    def test_interrupted_reference_pretraining_resumes_from_its_checkpoint(self):
        tmp = self.get_temp_dir()
        path = os.path.join(tmp, "ref.keras")
        bindings = [
            f"run.reference_path = '{path}'",
            "train_reference.num_steps = 12",
            "train_reference.checkpoint_every = 4",
        ]
        checkpoints = train.reference_checkpoints(path)
        self.assertEqual(checkpoints, os.path.join(tmp, "ref.checkpoints"))  # Beside the file.
        with mock.patch.object(train.ReferenceTraining, "more_callbacks", lambda _: [_KillAt(6)]):
            with self.assertRaises(_Killed):
                _run("reference.gin", bindings, os.path.join(tmp, "run"))
        self.assertFalse(os.path.exists(path))  # Saved only once complete.
        self.assertEqual(_latest_step(checkpoints), 4)

        _, stdout = _run("reference.gin", bindings, os.path.join(tmp, "run"))
        self.assertIn(f"resumed from {os.path.join(checkpoints, 'ckpt-4')} at step 4", stdout)
        self.assertEqual(_latest_step(checkpoints), 12)  # It ran to the end.
        resumed = keras.models.load_model(path)  # Loadable from its own path.
        self.assertEqual(int(resumed.optimizer.iterations), 12)

        # The same model as an uninterrupted pre-training.
        whole = os.path.join(tmp, "whole.keras")
        _run("reference.gin", [*bindings, f"run.reference_path = '{whole}'"], tmp)
        for a, b in zip(
            resumed.get_weights(), keras.models.load_model(whole).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)

    def test_reference_checkpoints_of_another_model_are_refused_or_discarded(self):
        tmp = self.get_temp_dir()
        path = os.path.join(tmp, "ref.keras")
        bindings = [f"run.reference_path = '{path}'", "train_reference.num_steps = 4"]
        _run("reference.gin", bindings, os.path.join(tmp, "run"))  # Leaves its checkpoints.
        wider = [*bindings, "small/cnn_classifier.dense_units = 7"]  # Another reference model.
        with self.assertRaises(checkpointing.CheckpointMismatch):
            _run("reference.gin", wider, os.path.join(tmp, "run"))
        # What gin/local.gin binds, as its reference path is shared by every smoke run.
        _, stdout = _run(
            "reference.gin", [*wider, "train_reference.discard_mismatched = True"], tmp
        )
        self.assertIn("Starting over.", stdout)
        units = [getattr(layer, "units", None) for layer in keras.models.load_model(path).layers]
        self.assertIn(7, units)  # The new model was trained and saved.
        self.assertEqual(_latest_step(train.reference_checkpoints(path)), 4)

    def test_interrupted_replay_resumes_from_its_checkpoint(self):
        tmp = self.get_temp_dir()
        _, active, _ = tiny_run()  # 12 recorded steps.
        bindings = [
            f"run.reference_path = '{os.path.join(tmp, 'reference.keras')}'",
            f"run.replay_from = '{active}'",
            "run.checkpoint_every = 4",
        ]
        model_dir = os.path.join(tmp, "replayed")
        checkpoints = os.path.join(model_dir, "checkpoints")
        with mock.patch.object(replay.ReplayRun, "more_callbacks", lambda _: [_KillAt(9)]):
            with self.assertRaises(_Killed):
                _run("uniform.gin", bindings, model_dir)
        self.assertEqual(_latest_step(checkpoints), 8)  # In the middle of an interval.
        self.assertFalse(os.path.exists(os.path.join(model_dir, "learner.keras")))

        curve, stdout = _run("uniform.gin", bindings, model_dir)
        self.assertIn(f"resumed from {os.path.join(checkpoints, 'ckpt-8')} at step 8", stdout)
        self.assertEqual([p["step"] for p in curve], [0, 6, 12])
        self.assertEqual(_latest_step(checkpoints), 12)

        whole = os.path.join(tmp, "whole")
        _run("uniform.gin", bindings, whole)
        with (
            open(os.path.join(model_dir, "metrics.json")) as f,
            open(os.path.join(whole, "metrics.json")) as g,
        ):
            self.assertEqual(json.load(f), json.load(g))  # Fit metrics of the interval included.


if __name__ == "__main__":
    tf.test.main()
