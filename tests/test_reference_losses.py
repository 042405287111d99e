"""Precomputed reference losses: same scores, no reference pass, and caches that cannot lie."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras import ActiveLearner
from active_keras.analysis import flops
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from active_keras.selection import reference_losses as reference_losses_lib
from active_keras.tasks.classification import ClassificationTask

MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False),
    "graph": dict(run_eagerly=False, jit_compile=False),
    "jit": dict(run_eagerly=False, jit_compile=True),
}


class CountingModel(keras.Model):
    """Wraps a model and counts its calls (traces, in graph mode)."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.calls = 0

    def call(self, x, training=False):
        self.calls += 1
        return self.inner(x, training=training)


def _task():
    data = ImageClassificationData("digits", heldout_size=200, label_noise=0.2)
    small = lambda shape, n, name: cnn.cnn_classifier(  # noqa: E731
        shape, n, widths=(4,), dense_units=0, name=name
    )
    return ClassificationTask(data, learner_fn=small, small_fn=small)


def _model(task, reference=None, **kwargs):
    keras.utils.set_random_seed(0)
    learner = task.build_learner()
    reference = reference if reference is not None else task.build_small("reference")
    model = ActiveLearner(
        learner,
        reference,
        actor=task.build_small("actor"),
        policy="learnability",
        selection="topk",
        super_batch_size=32,
        seed=0,
        **kwargs,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=task.loss())
    return model


class ReferenceLossesTest(parameterized.TestCase, tf.test.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.task = _task()

    def test_looked_up_scores_equal_computed_scores(self):
        model = _model(self.task)
        ids, losses = reference_losses_lib.compute(model, self.task)
        x, y, meta = next(iter(self.task.dataset("train", 32, shuffle=True, seed=3)))
        computed, context = model.score(x, y)
        model.use_reference_losses(reference_losses_lib.table(ids, losses))
        looked_up, looked_context = model.score(x, y, meta["example_id"])
        self.assertAllClose(looked_up, computed, rtol=1e-5, atol=1e-5)
        self.assertAllClose(
            looked_context["losses"]["reference"], context["losses"]["reference"], atol=1e-5
        )
        self.assertNotIn("reference", looked_context["outputs"])  # Not run.

    @parameterized.named_parameters(*[(name, name) for name in MODES])
    def test_the_reference_is_never_called_in_a_step(self, mode):
        reference = CountingModel(self.task.build_small("reference"))
        reference.build((None, *self.task.input_shape))
        model = _model(self.task, reference=reference)
        table = reference_losses_lib.table(*reference_losses_lib.compute(model, self.task))
        model.use_reference_losses(table)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=self.task.loss(), **MODES[mode])
        reference.calls = 0
        before = [w.copy() for w in model.learner.get_weights()]
        ds = self.task.dataset("train", 32, shuffle=True, repeat=True)
        model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
        self.assertEqual(reference.calls, 0)
        changed = [np.any(a != b) for a, b in zip(before, model.learner.get_weights(), strict=True)]
        self.assertTrue(any(changed))

    def test_batches_without_ids_get_a_clear_error(self):
        model = _model(self.task)
        model.use_reference_losses(np.zeros([2000], np.float32))
        x = np.zeros([64, *self.task.input_shape], np.float32)
        y = np.zeros([64], np.int32)
        with self.assertRaisesRegex(ValueError, "needs each example's id"):
            model.fit(x, y, batch_size=32, epochs=1, verbose=0)

    def test_online_reference_and_precomputed_losses_are_refused_together(self):
        with self.assertRaisesRegex(ValueError, "online reference"):
            _model(self.task, online_reference=True, reference_losses=np.zeros([3]))

    def test_ledger_charges_the_scoring_pass_once(self):
        model = _model(self.task)
        computed = flops.FlopLedger.for_learner(model, 32)
        table = reference_losses_lib.table(*reference_losses_lib.compute(model, self.task))
        model.use_reference_losses(table)
        ledger = flops.FlopLedger.for_learner(model, 32)
        f_l, f_a = ledger.flops["learner"], ledger.flops["reference"]
        n_train = len(self.task.data.splits["train"].labels)
        self.assertEqual(ledger.one_time, {"reference": f_a * n_train})
        # Learnability: 3 F_L b + F_A B + 3 F_A b, the reference's F_A B gone.
        self.assertEqual(sum(ledger.per_step().values()), 3 * f_l * 16 + f_a * 32 + 3 * f_a * 16)
        self.assertEqual(
            sum(computed.per_step().values()) - sum(ledger.per_step().values()), f_a * 32
        )
        self.assertEqual(ledger.totals(0)["total_flops"], f_a * n_train)
        self.assertEqual(
            ledger.totals(10)["total_flops"], 10 * sum(ledger.per_step().values()) + f_a * n_train
        )


class CacheTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.task = _task()
        self.model = _model(self.task)
        self.ref_path = os.path.join(self.get_temp_dir(), "reference.keras")

    def test_auto_computes_once_then_reuses(self):
        first = reference_losses_lib.load_or_compute("auto", self.model, self.task, self.ref_path)
        cached = [f for f in os.listdir(self.get_temp_dir()) if f.endswith(".npz")]
        self.assertLen(cached, 1)
        path = os.path.join(self.get_temp_dir(), cached[0])
        mtime = os.path.getmtime(path)
        again = reference_losses_lib.load_or_compute("auto", self.model, self.task, self.ref_path)
        self.assertEqual(os.path.getmtime(path), mtime)
        self.assertAllEqual(first, again)
        ids = self.task.data.splits["train"].ids
        self.assertTrue(np.all(np.isfinite(first[ids])))

    def test_every_training_example_is_scored_when_the_task_drops_remainders(self):
        # Open Clip Art batches the training split with drop_remainder=True by default.
        task = self.task

        class Dropping:
            data = task.data

            def dataset(self, split, batch_size, **kwargs):
                return task.dataset(split, batch_size, **{"drop_remainder": True, **kwargs})

        ids, _ = reference_losses_lib.compute(self.model, Dropping())
        self.assertAllEqual(np.sort(ids), np.sort(task.data.splits["train"].ids))

    def test_a_cache_of_another_example_loss_is_refused(self):
        path = self._cache()
        self.model.example_loss = lambda y, y_pred: tf.zeros(tf.shape(y)[:1])
        with self.assertRaisesRegex(ValueError, "losses; this run scores with"):
            reference_losses_lib.load(path, self.model, self.task)

    def _cache(self):
        reference_losses_lib.load_or_compute("auto", self.model, self.task, self.ref_path)
        name = next(f for f in os.listdir(self.get_temp_dir()) if f.endswith(".npz"))
        return os.path.join(self.get_temp_dir(), name)

    def test_a_cache_of_another_reference_is_refused(self):
        path = self._cache()
        kernel = self.model.reference.weights[0]
        value = kernel.numpy()
        value.flat[0] += 1e-3  # One weight.
        kernel.assign(value)
        with self.assertRaisesRegex(ValueError, "computed with another reference"):
            reference_losses_lib.load_or_compute(path, self.model, self.task, self.ref_path)
        with self.assertRaisesRegex(ValueError, "computed with another reference"):
            reference_losses_lib.load_or_compute("auto", self.model, self.task, self.ref_path)

    def test_a_cache_of_other_labels_is_refused(self):
        path = self._cache()
        labels = self.task.data.splits["train"].labels
        labels[0] = (labels[0] + 1) % self.task.num_classes  # One label.
        with self.assertRaisesRegex(ValueError, "computed on other data"):
            reference_losses_lib.load_or_compute(path, self.model, self.task, self.ref_path)

    def test_a_missing_given_file_is_an_error(self):
        with self.assertRaisesRegex(FileNotFoundError, "do not exist"):
            reference_losses_lib.load_or_compute(
                os.path.join(self.get_temp_dir(), "nope.npz"), self.model, self.task, self.ref_path
            )


if __name__ == "__main__":
    tf.test.main()
