"""Cross-fitted references: no held-out data; each half is scored by the other half's reference."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import gin
import keras
import numpy as np
import tensorflow as tf

from active_keras import train
from active_keras.data.classification import CROSSFIT_FOLDS, ImageClassificationData
from active_keras.models import cnn
from active_keras.selection import reference_losses
from active_keras.tasks.classification import ClassificationTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A whole run on scikit-learn's digits, through the shipped gin file for cross-fitting.
DIGITS = [
    "ImageClassificationData.name = 'digits'",
    "ImageClassificationData.heldout_size = 200",
    "ImageClassificationData.validation_size = 100",
    "learner/cnn_classifier.widths = (4,)",
    "small/cnn_classifier.widths = (4,)",
    "run.super_batch_size = 32",
    "run.num_steps = 4",
    "run.eval_every = 2",
    "run.jit_compile = False",
    "run.write_report = False",
    "train_reference.num_steps = 3",
    "train_reference.batch_size = 32",
    "train_reference.jit_compile = False",
]


def _tiny(shape, n, name):
    return cnn.cnn_classifier(shape, n, widths=(4,), dense_units=0, name=name)


def _task():
    data = ImageClassificationData("digits", heldout_size=200, label_noise=0.2)
    return ClassificationTask(data, learner_fn=_tiny, small_fn=_tiny)


class CrossfitTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()

    def tearDown(self):
        gin.clear_config()
        super().tearDown()

    def test_each_half_is_scored_by_the_reference_trained_on_the_other(self):
        task = _task()
        path = os.path.join(self.get_temp_dir(), "ref.keras")
        folds = train.train_reference(
            task, path, num_steps=3, batch_size=32, split="crossfit", jit_compile=False
        )
        self.assertLen(folds, 2)
        for fold_path in train.crossfit_paths(path):
            self.assertTrue(os.path.exists(fold_path), fold_path)
        self.assertFalse(os.path.exists(path))  # Two references, no third.
        self.assertNotAllClose(folds[0].get_weights()[0], folds[1].get_weights()[0])

        keras.utils.set_random_seed(0)
        model = train.ActiveLearner(
            task.build_learner(), folds[0], actor=task.build_small("actor"), super_batch_size=32
        )
        model.compile(optimizer="sgd", loss=task.loss())
        ids, losses = reference_losses.compute(model, task, folds)
        by_id = dict(zip(ids, losses, strict=True))
        self.assertCountEqual(ids, task.data.splits["train"].ids)
        for k, name in enumerate(CROSSFIT_FOLDS):
            x, y, meta = next(iter(task.dataset(name, 64)))
            other = model.example_losses(y, folds[1 - k](x, training=False)).numpy()
            mine = np.array([by_id[i] for i in meta["example_id"].numpy()])
            self.assertAllClose(mine, other, atol=1e-5)
            same = model.example_losses(y, folds[k](x, training=False)).numpy()
            self.assertNotAllClose(mine, same)  # Not by the reference that saw it.

    def test_a_task_without_folds_is_refused_by_name(self):
        class NoFolds(ClassificationTask):
            supports_crossfit = False

        task = NoFolds(_task().data, learner_fn=_tiny, small_fn=_tiny)
        with self.assertRaisesRegex(ValueError, "crossfit.*NoFolds has none"):
            train.train_reference(
                task, os.path.join(self.get_temp_dir(), "r.keras"), split="crossfit"
            )

    def test_a_run_needs_no_heldout_data_and_counts_both_pretrainings(self):
        model_dir = os.path.join(self.get_temp_dir(), "run")
        reference = os.path.join(self.get_temp_dir(), "refs", "reference.keras")
        bindings = DIGITS + [f"run.reference_path = '{reference}'"]
        gin.parse_config_files_and_bindings(
            [os.path.join(ROOT, "gin/classact_crossfit.gin")], bindings
        )
        curve = train.run(model_dir)
        self.assertIn("validation_accuracy", curve[-1])  # Evaluated on every split it has.
        self.assertIn("test_accuracy", curve[-1])
        with open(os.path.join(model_dir, "metrics.json")) as f:
            facts = json.load(f)
        self.assertEqual(facts["reference_losses"], "precomputed")  # No binding needed.
        one = 3 * facts["forward_flops_per_example"]["reference"] * 3 * 32
        self.assertEqual(facts["reference_pretraining_flops"], 2 * one)
        for fold_path in train.crossfit_paths(reference):
            self.assertTrue(os.path.exists(fold_path), fold_path)


if __name__ == "__main__":
    tf.test.main()
