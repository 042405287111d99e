"""Behaviour of the ActiveLearner train step, in eager, graph and XLA modes."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras import ActiveLearner
from active_keras.training.callbacks import NonFiniteLossError, StopOnNaN

MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False),
    "graph": dict(run_eagerly=False, jit_compile=False),
    "jit": dict(run_eagerly=False, jit_compile=True),
}
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _dense(n_in, n_out, name, kernel=None):
    model = keras.Sequential(
        [keras.Input((n_in,)), keras.layers.Dense(n_out, use_bias=False)], name=name
    )
    if kernel is not None:
        model.layers[0].kernel.assign(kernel)
    return model


def _mlp(n_in, name):
    return keras.Sequential(
        [keras.Input((n_in,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)],
        name=name,
    )


def _toy_data(n=64, dim=6, batch=16, corrupted=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = rng.integers(0, 3, n).astype("int32")
    meta = {"corrupted": rng.random(n) < 0.25, "example_id": np.arange(n)}
    parts = (x, y, meta) if corrupted else (x, y)
    return tf.data.Dataset.from_tensor_slices(parts).repeat().batch(batch, drop_remainder=True)


def _compile(model, mode, lr=0.1):
    model.compile(
        optimizer=keras.optimizers.SGD(lr), loss=LOSS, metrics=["accuracy"], **MODES[mode]
    )


class ActiveLearnerTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.named_parameters((m, m) for m in MODES)
    def test_learner_sees_only_the_selected_examples(self, mode):
        # One-hot inputs: example i only moves row i of a bias-free learner, so the
        # rows that change are exactly the examples the learner trained on.
        n, b = 8, 4
        x = np.eye(n, dtype="float32")
        y = np.zeros(n, "int32")
        # Reference loss grows with the example index: easy_reference keeps 0..3.
        ref_kernel = np.stack([-np.arange(n, dtype="float32"), np.zeros(n, "float32")], 1)
        reference = _dense(n, 2, "reference", ref_kernel)
        learner = _dense(n, 2, "learner", np.zeros((n, 2), "float32"))
        model = ActiveLearner(
            learner, reference, policy="easy_reference", selection="topk", keep_fraction=b / n
        )
        _compile(model, mode)
        order = np.random.default_rng(0).permutation(n)  # The batch order must not matter.
        model.fit(
            tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(n, drop_remainder=True),
            epochs=1,
            verbose=0,
        )
        moved = np.flatnonzero(np.abs(learner.layers[0].kernel.numpy()).sum(1) > 0)
        np.testing.assert_array_equal(moved, np.arange(b))

    @parameterized.named_parameters(
        (f"{mode}_{selection}", mode, selection)
        for mode in MODES
        for selection in ("topk", "sample")
    )
    def test_reference_frozen_actor_trains(self, mode, selection):
        reference, learner = _mlp(6, "reference"), _mlp(6, "learner")
        model = ActiveLearner(learner, reference, selection=selection, seed=0)
        _compile(model, mode)
        ref_before = [w.numpy().copy() for w in reference.weights]
        actor_before = [w.numpy().copy() for w in model.actor.weights]
        learner_before = [w.numpy().copy() for w in learner.weights]
        history = model.fit(_toy_data(), steps_per_epoch=3, epochs=1, verbose=0)
        for before, w in zip(ref_before, reference.weights, strict=True):
            np.testing.assert_array_equal(before, w.numpy())
        self.assertTrue(
            any(
                not np.allclose(a, w.numpy())
                for a, w in zip(actor_before, model.actor.weights, strict=True)
            )
        )
        self.assertTrue(
            any(
                not np.allclose(a, w.numpy())
                for a, w in zip(learner_before, learner.weights, strict=True)
            )
        )
        self.assertEqual(model.optimizer.iterations.numpy(), 3)
        self.assertEqual(model.actor_optimizer.iterations.numpy(), 3)
        logs = history.history
        self.assertLessEqual(
            {"loss", "accuracy", "score", "actor_loss", "selected_corrupted"}, set(logs)
        )
        self.assertTrue(0.0 <= logs["selected_corrupted"][0] <= 1.0)

    @parameterized.named_parameters((m, m) for m in MODES)
    def test_scheduled_temperature_is_read_at_every_update(self, mode):
        # Step 0 samples at T = 1e-4, a top-k draw: easy_reference keeps examples 0..3 only.
        # Step 1 samples at T = 1e4, near uniform over the 8 (one-hot learner as above).
        n, b = 8, 4
        x, y = np.eye(n, dtype="float32"), np.zeros(n, "int32")
        ref_kernel = np.stack([-np.arange(n, dtype="float32"), np.zeros(n, "float32")], 1)
        learner = _dense(n, 2, "learner", np.zeros((n, 2), "float32"))
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1e-4, 1e4])
        model = ActiveLearner(
            learner,
            _dense(n, 2, "reference", ref_kernel),
            policy="easy_reference",
            selection="sample",
            keep_fraction=b / n,
            temperature=schedule,
            seed=0,
        )
        _compile(model, mode)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(n, drop_remainder=True)
        history = model.fit(data, epochs=1, verbose=0)
        moved = np.flatnonzero(np.abs(learner.layers[0].kernel.numpy()).sum(1) > 0)
        np.testing.assert_array_equal(moved, np.arange(b))
        self.assertAllClose(history.history["temperature"], [1e-4])
        history = model.fit(data.repeat(), steps_per_epoch=3, epochs=1, verbose=0)
        self.assertAllClose(history.history["temperature"], [1e4])
        moved = np.flatnonzero(np.abs(learner.layers[0].kernel.numpy()).sum(1) > 0)
        self.assertGreater(len(moved), b)  # Near-uniform draws reach the other examples.

    def test_constant_temperature_is_not_logged(self):
        model = ActiveLearner(_mlp(6, "learner"), _mlp(6, "reference"), selection="sample")
        _compile(model, "graph")
        history = model.fit(_toy_data(), steps_per_epoch=2, epochs=1, verbose=0)
        self.assertNotIn("temperature", history.history)
        with self.assertRaisesRegex(ValueError, "temperature must be > 0, got -1"):
            ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), selection="sample", temperature=lambda s: -1)

    def test_actor_is_a_fresh_copy_of_the_reference_architecture(self):
        reference = _mlp(6, "reference")
        model = ActiveLearner(_mlp(6, "learner"), reference)
        self.assertIsNot(model.actor, reference)
        self.assertEqual(
            [w.shape for w in model.actor.weights], [w.shape for w in reference.weights]
        )
        self.assertTrue(model.actor.trainable)
        self.assertFalse(reference.trainable)

    def test_reference_is_not_in_weights_or_checkpoints(self):
        tmp_dir = self.get_temp_dir()
        reference = _mlp(6, "reference")
        model = ActiveLearner(_mlp(6, "learner"), reference)
        _compile(model, "graph")
        model.fit(_toy_data(), steps_per_epoch=1, epochs=1, verbose=0)
        ref_ids = {id(v) for v in reference.weights}
        self.assertFalse(ref_ids & {id(v) for v in model.weights})
        path = os.path.join(tmp_dir, "ckpt.weights.h5")
        model.save_weights(path)
        n_saved = len(model.learner.weights) + len(model.actor.weights)
        import h5py

        with h5py.File(path) as f:
            names = []
            f.visit(names.append)
        self.assertFalse([n for n in names if "reference" in n])
        self.assertEqual(len(model.weights), n_saved)

    def test_learner_saves_alone(self):
        tmp_dir = self.get_temp_dir()
        model = ActiveLearner(_mlp(6, "learner"), _mlp(6, "reference"))
        _compile(model, "graph")
        model.fit(_toy_data(), steps_per_epoch=2, epochs=1, verbose=0)
        path = os.path.join(tmp_dir, "learner.keras")
        model.learner.save(path)
        loaded = keras.models.load_model(path)
        x = np.ones((2, 6), "float32")
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.learner.predict(x, verbose=0), rtol=1e-5
        )

    @parameterized.named_parameters(
        (p, p) for p in ("uniform", "hard_learner", "easy_reference", "learnability", "rho_loss")
    )
    def test_every_policy_trains_under_xla(self, policy):
        model = ActiveLearner(
            _mlp(6, "learner"), _mlp(6, "reference"), policy=policy, selection="sample", seed=1
        )
        _compile(model, "jit")
        history = model.fit(_toy_data(corrupted=False), steps_per_epoch=2, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertNotIn("selected_corrupted", history.history)  # The data marks no corruption.
        self.assertEqual("actor_loss" in history.history, policy == "learnability")

    def test_online_reference_trains_on_the_whole_super_batch(self):
        reference = _mlp(6, "reference")
        model = ActiveLearner(_mlp(6, "learner"), reference, online_reference=True)
        _compile(model, "graph", lr=0.05)
        before = [w.numpy().copy() for w in reference.weights]
        model.fit(_toy_data(), steps_per_epoch=2, epochs=1, verbose=0)
        self.assertTrue(
            any(
                not np.allclose(a, w.numpy())
                for a, w in zip(before, reference.weights, strict=True)
            )
        )
        # 2x the actor's
        self.assertAllClose(
            model.reference_optimizer.learning_rate.numpy(), 0.1, rtol=1e-6, atol=1e-12
        )
        self.assertEqual(model.reference_optimizer.iterations.numpy(), 2)

    def test_evaluate_reports_only_learner_metrics(self):
        model = ActiveLearner(_mlp(6, "learner"), _mlp(6, "reference"))
        _compile(model, "graph")
        model.fit(_toy_data(), steps_per_epoch=1, epochs=1, verbose=0)
        result = model.evaluate(_toy_data(), steps=2, verbose=0, return_dict=True)
        self.assertEqual(set(result), {"loss", "accuracy"})

    # ---------------------------------------------------------------------- bad input

    def test_keep_fraction_giving_b_zero_or_b_equal_to_super_batch(self):
        with self.assertRaisesRegex(ValueError, "keep_fraction must be in \\(0, 1\\), got 1.0"):
            ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), keep_fraction=1.0)
        with self.assertRaisesRegex(ValueError, "keeps b=0 of a super-batch of B=4"):
            ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), keep_fraction=0.1, super_batch_size=4)
        with self.assertRaisesRegex(ValueError, "keeps b=4 of a super-batch of B=4"):
            ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), keep_fraction=0.9, super_batch_size=4)

    def test_super_batch_of_unknown_size(self):
        model = ActiveLearner(_mlp(6, "l"), _mlp(6, "r"))
        _compile(model, "graph")
        ds = _toy_data().unbatch().batch(16)  # drop_remainder=False: size None.
        with self.assertRaisesRegex(ValueError, "super-batch size is unknown.*drop_remainder=True"):
            model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)

    def test_super_batch_of_wrong_size(self):
        model = ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), super_batch_size=32)
        _compile(model, "graph")
        with self.assertRaisesRegex(ValueError, "super-batch of 16 examples.*super_batch_size=32"):
            model.fit(_toy_data(batch=16), steps_per_epoch=1, epochs=1, verbose=0)

    def test_images_of_the_wrong_shape(self):
        model = ActiveLearner(_mlp(6, "l"), _mlp(6, "r"))
        _compile(model, "graph")
        with self.assertRaisesRegex(ValueError, r"\(5,\).*input shape \(6,\)"):
            model.fit(_toy_data(dim=5), steps_per_epoch=1, epochs=1, verbose=0)

    def test_unknown_policy_and_missing_reference(self):
        with self.assertRaisesRegex(ValueError, "Unknown policy 'hardest'"):
            ActiveLearner(_mlp(6, "l"), _mlp(6, "r"), policy="hardest")
        with self.assertRaisesRegex(ValueError, "needs a reference model"):
            ActiveLearner(_mlp(6, "l"), policy="learnability")

    def test_nan_loss_stops_the_run_naming_the_step(self):
        model = ActiveLearner(_mlp(6, "l"), _mlp(6, "r"))
        _compile(model, "graph", lr=1e30)  # Diverges within a few steps.
        with self.assertRaisesRegex(NonFiniteLossError, "loss is (nan|inf) at step [0-9]+"):
            model.fit(_toy_data(), steps_per_epoch=50, epochs=1, verbose=0, callbacks=[StopOnNaN()])


if __name__ == "__main__":
    tf.test.main()
