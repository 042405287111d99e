"""Replay: the ids an active run selected are recorded, and replayed in the same order."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import pathlib
import shutil
import tempfile
import types

import gin
import keras
import numpy as np
import tensorflow as tf

from active_keras import main as main_lib
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from active_keras.training import replay
from active_keras.training.active_learner import ActiveLearner
from tests.cli_helpers import ROOT, TINY, tiny_run


def _data():
    return ImageClassificationData("digits", heldout_size=300, label_noise=0.2)


def _small(name):
    return cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0, name=name)


def _record(folder):
    """A 6-step top-k `easy_reference` run: its selections follow from the frozen reference."""
    keras.utils.set_random_seed(0)
    reference = _small("reference")
    model = ActiveLearner(
        _small("learner"),
        reference,
        policy="easy_reference",
        selection="topk",
        super_batch_size=32,
        jit_scoring=False,
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, jit_compile=False)
    data = _data()
    model.fit(
        data.train_dataset(32, seed=3),
        epochs=2,
        steps_per_epoch=3,
        verbose=0,
        callbacks=[replay.ReplayRecorder(folder)],
    )
    return folder, reference, data


class RecordedRunTest(tf.test.TestCase):
    """Tests of one recorded run, made once for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tmp = tempfile.mkdtemp(prefix="run")
        cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
        cls.recorded = _record(os.path.join(tmp, "replay"))

    def test_recorder_writes_the_selected_ids(self):
        folder, reference, data = self.recorded
        self.assertEqual(sorted(os.listdir(folder)), ["steps-000000000.npy", "steps-000000003.npy"])
        self.assertEqual(np.load(os.path.join(folder, "steps-000000003.npy")).dtype, np.int32)
        ids = replay.load_selected_ids(folder)
        self.assertEqual(ids.shape, (6, 16))
        self.assertEqual(ids.dtype, np.int64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        for row, (x, y, meta) in zip(ids, data.train_dataset(32, seed=3).take(6), strict=True):
            # easy_reference + top-k: the 16 lowest reference losses, best first.
            top = tf.math.top_k(-loss.call(y, reference(x)), k=16).indices
            np.testing.assert_array_equal(row, tf.gather(meta["example_id"], top).numpy())

    def test_replay_reproduces_the_recorded_order(self):
        folder, _, data = self.recorded
        ids = replay.load_selected_ids(folder)
        split = data.splits["train"]
        row = {int(i): p for p, i in enumerate(split.ids)}
        batches = list(replay.replay_dataset(data, os.path.dirname(folder)))
        self.assertEqual(len(batches), 6)
        for want, (x, y, meta) in zip(ids, batches, strict=True):
            np.testing.assert_array_equal(meta["example_id"].numpy(), want)
            p = [row[int(i)] for i in want]
            np.testing.assert_array_equal(
                np.round(x.numpy() * 255).astype(np.uint8), split.images[p]
            )
            np.testing.assert_array_equal(y.numpy(), split.labels[p])
            np.testing.assert_array_equal(meta["corrupted"].numpy(), split.corrupted[p])
        # Another batch size re-batches the same sequence; start_step skips sub-batches.
        rebatched = [m["example_id"].numpy() for _, _, m in replay.replay_dataset(data, folder, 8)]
        np.testing.assert_array_equal(np.concatenate(rebatched), ids.reshape(-1))
        later = [
            m["example_id"].numpy() for _, _, m in replay.replay_dataset(data, folder, None, 4)
        ]
        np.testing.assert_array_equal(np.stack(later), ids[4:])

    def test_replay_with_other_data_names_the_missing_ids(self):
        folder, _, _ = self.recorded
        other = ImageClassificationData("digits", heldout_size=1000)
        with self.assertRaisesRegex(ValueError, "recorded ids .* are not in the train split"):
            replay.replay_dataset(other, folder)


class ReplayTest(tf.test.TestCase):
    def test_resumed_recorder_drops_rows_past_the_restored_step(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        np.save(tmp_dir / "steps-000000000.npy", np.arange(6, dtype=np.int32).reshape(3, 2))
        np.save(tmp_dir / "steps-000000003.npy", np.arange(6, 12, dtype=np.int32).reshape(3, 2))
        np.save(tmp_dir / "steps-000000006.npy", np.zeros((3, 2), np.int32))
        recorder = replay.ReplayRecorder(str(tmp_dir))
        restored = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=tf.Variable(4)))
        recorder.set_model(restored)
        recorder.on_train_begin()
        np.testing.assert_array_equal(replay.load_selected_ids(tmp_dir), np.arange(8).reshape(4, 2))
        os.remove(tmp_dir / "steps-000000000.npy")
        with self.assertRaisesRegex(ValueError, "starts at step 3; expected step 0"):
            replay.load_selected_ids(tmp_dir)
        with self.assertRaisesRegex(FileNotFoundError, "No recorded selections"):
            replay.load_selected_ids(tmp_dir / "none")

    def test_run_records_then_replays_from_the_command_line_config(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        # The active run: the shared tiny CLI run of `classact.gin` (which records by default).
        _, active, _ = tiny_run()
        bindings = TINY + [
            f"run.reference_path = '{tmp_dir / 'reference.keras'}'",
            "run.write_report = False",
            "run.selection_log_every = 0",
            "run.verbose = 0",
        ]
        replayed = str(tmp_dir / "replayed")
        ids = replay.load_selected_ids(active)
        self.assertEqual(ids.shape, (12, 16))
        try:
            curve = main_lib.run_config(
                [os.path.join(ROOT, "gin", "uniform.gin")],
                bindings
                + [f"run.replay_from = '{active}'", "learner/cnn_classifier.widths = (4,)"],
                replayed,
            )
        finally:
            gin.clear_config()
        self.assertEqual([p["step"] for p in curve], [0, 6, 12])
        with open(os.path.join(replayed, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertEqual(metrics["policy"], "replay")
        self.assertEqual(metrics["replay_from"], active)
        last = metrics["curve"][-1]
        self.assertEqual(last["examples_trained"], 12 * 16)
        self.assertEqual(last["total_flops"], last["learner_flops"])
        self.assertTrue(0.0 <= last["test_accuracy"] <= 1.0)
        self.assertTrue(os.path.exists(os.path.join(replayed, "learner.keras")))


if __name__ == "__main__":
    tf.test.main()
