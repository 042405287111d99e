"""ClipTask: the task adapter over Open Clip Art-style folders."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

from active_keras.data.openclipart import OpenClipArt
from active_keras.models import clip
from active_keras.tasks.clip_task import ClipTask
from active_keras.text import tokenizer


def _task(tmp_path):
    """A ClipTask over 30 random images in three categories, built under `tmp_path`."""
    rng = np.random.default_rng(0)
    for i in range(30):
        category, word = [("animals", "cat"), ("food", "pizza"), ("tools", "hammer")][i % 3]
        folder = tmp_path / "png" / category
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (12, 12, 4)).astype(np.uint8)
        Image.fromarray(pixels, "RGBA").save(folder / f"{word}_{i}.png")
    data = OpenClipArt(root=str(tmp_path / "png"), image_size=16)
    return ClipTask(
        data=data, vocab_dir=str(tmp_path / "run"), sequence_length=8, image_encoder="cnn"
    )


class ClipTaskTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp_dir = pathlib.Path(self.get_temp_dir())
        self.task = _task(self.tmp_dir)

    def test_vocab_saved_and_models_checked(self):
        task, tmp_dir = self.task, self.tmp_dir
        self.assertTrue((tmp_dir / "run" / tokenizer.VOCAB_FILENAME).exists())
        task.check_model(task.build_small("reference"), "reference")
        wrong = clip.build_clip(task.tokenizer.vocab_size, "tiny", 16, 9, image_encoder="cnn")
        with self.assertRaisesRegex(ValueError, "inputs"):
            task.check_model(wrong, "reference")

    def test_reference_size_sizes_the_reference_only(self):
        task = ClipTask(
            data=self.task.data,
            vocab_dir=str(self.tmp_dir / "run"),
            sequence_length=8,
            image_encoder="cnn",
            reference_size="small",  # The learner's size; the actor stays "tiny".
        )
        learner, actor = (
            task.build_learner().count_params(),
            task.build_small("actor").count_params(),
        )
        self.assertEqual(task.build_small("reference").count_params(), learner)
        self.assertEqual(actor, self.task.build_small("reference").count_params())
        self.assertLess(actor, learner)

    def test_evaluate_keys(self):
        task = self.task
        metrics = task.evaluate(task.build_learner())
        self.assertIn(task.primary_metric, metrics)
        self.assertIn("image_to_text_recall@5", metrics)
        self.assertEqual(metrics["num_examples"], len(task.data.examples("test")))


if __name__ == "__main__":
    tf.test.main()
