"""`ActiveLearner` with the inputs and callbacks Keras users pass to `fit()` (issue 15).

Every test counts what the learner really trained on: `CountingLearner` records, in
its `compute_loss` (the learner's loss, the one its gradient comes from), the
id of every row that enters that loss with a nonzero sample weight. Example
`i` (1-based) carries its id as input column 0 (`i / 1000`); padding rows are
all zeros, so id 0 counts rows of padding.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras import ActiveLearner

N, DIM, B, KEEP = 200, 5, 32, 0.5
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False),
    "graph": dict(run_eagerly=False, jit_compile=False),
    "jit": dict(run_eagerly=False, jit_compile=True),
}


class CountingLearner(ActiveLearner):
    """Counts, per example id, the rows the learner's loss weighted by more than 0."""

    def __init__(self, *args, n_ids, **kwargs):
        super().__init__(*args, **kwargs)
        counts = tf.Variable(tf.zeros([n_ids], tf.int32), trainable=False, name="counts")
        object.__setattr__(self, "trained_counts", counts)  # Test-only: not a weight.

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training:
            ids = tf.cast(tf.round(x[:, 0] * 1000.0), tf.int32)
            if sample_weight is None:
                trained = tf.ones_like(ids)
            else:
                trained = tf.cast(tf.not_equal(sample_weight, 0), tf.int32)
            n_ids = self.trained_counts.shape[0]
            self.trained_counts.assign_add(tf.math.unsorted_segment_sum(trained, ids, n_ids))
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)


def _mlp(name):
    return keras.Sequential(
        [keras.Input((DIM,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)],
        name=name,
    )


def _data(n=N):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, DIM)).astype("float32")
    x[:, 0] = np.arange(1, n + 1) / 1000.0  # The example id.
    y = rng.integers(0, 3, n).astype("int32")
    return x, y


def _model(mode="graph", n=N, selection="sample", **kwargs):
    model = CountingLearner(
        _mlp("learner"),
        _mlp("reference"),
        selection=selection,
        keep_fraction=KEEP,
        seed=0,
        n_ids=n + 1,
        **kwargs,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05), loss=LOSS, metrics=["accuracy"], **MODES[mode]
    )
    return model


def _expected_per_epoch(n, size=B):
    """Rows trained per epoch: b of each full batch, max(1, round(KEEP * n)) of a last one."""
    full, last = divmod(n, size)
    return full * round(KEEP * size) + (max(1, round(KEEP * last)) if last else 0)


class _PyDataset(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[s], self.y[s]


def _generator(x, y, batch_size):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def _fit_args(kind, x, y):
    """`(args, kwargs, training rows)` of `fit()` for each kind of input."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if kind == "dataset_drop_remainder":
        return (ds.batch(B, drop_remainder=True),), {}, len(x) // B * B
    if kind == "dataset_partial":  # Static size unknown: needs super_batch_size=B.
        return (ds.batch(B),), {}, len(x)
    if kind == "numpy":
        return (x, y), dict(batch_size=B), len(x)
    if kind == "numpy_validation_split":
        return (x, y), dict(batch_size=B, validation_split=0.1), int(np.ceil(len(x) * 0.9))
    if kind == "numpy_default_batch_size":  # Keras batches arrays by 32.
        return (x, y), {}, len(x)
    if kind == "numpy_sample_weight":  # Per-example weights, all nonzero.
        return (x, y), dict(batch_size=B, sample_weight=np.full(len(x), 0.5, "float32")), len(x)
    if kind == "pydataset":
        return (_PyDataset(x, y, B),), {}, len(x)
    if kind == "generator":
        return (_generator(x, y, B),), {}, len(x)
    raise ValueError(kind)


class FitInputsTest(tf.test.TestCase, parameterized.TestCase):
    def _check_trained(self, model, rows, epochs, before):
        counts = model.trained_counts.numpy()
        self.assertEqual(counts[0], 0, "trained on padding")
        self.assertEqual(counts.sum(), epochs * _expected_per_epoch(rows))
        self.assertEqual(counts[rows + 1 :].sum(), 0, "trained on validation rows")
        self.assertLessEqual(counts.max(), epochs)  # Once per epoch at most.
        after = model.learner.get_weights()
        self.assertTrue(any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)))

    @parameterized.named_parameters(
        ("dataset_drop_remainder", "dataset_drop_remainder", "graph"),
        ("dataset_partial", "dataset_partial", "graph"),
        ("dataset_partial_jit", "dataset_partial", "jit"),
        ("numpy", "numpy", "graph"),
        ("numpy_eager", "numpy", "eager"),
        ("numpy_jit", "numpy", "jit"),
        ("numpy_validation_split", "numpy_validation_split", "graph"),
        ("numpy_default_batch_size", "numpy_default_batch_size", "graph"),
        ("numpy_sample_weight", "numpy_sample_weight", "graph"),
        ("pydataset", "pydataset", "graph"),
        ("generator", "generator", "graph"),
    )
    def test_fit_trains_on_the_expected_real_rows(self, kind, mode):
        x, y = _data()
        model = _model(mode, **({"super_batch_size": B} if kind == "dataset_partial" else {}))
        before = model.learner.get_weights()
        args, kwargs, rows = _fit_args(kind, x, y)
        epochs = 1 if kind == "generator" else 2
        history = model.fit(*args, epochs=epochs, verbose=0, **kwargs)
        self.assertLen(history.history["loss"], epochs)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        if kind == "numpy_validation_split":
            self.assertIn("val_loss", history.history)
        self._check_trained(model, rows, epochs, before)

    @parameterized.named_parameters(
        ("one_row_graph", N - 7, "graph"),  # 193 = 6 * 32 + 1: a last batch of one row.
        ("one_row_jit", N - 7, "jit"),
        ("smaller_than_b_eager", N - 20, "eager"),  # 180 = 5 * 32 + 20; b = 16.
        ("smaller_than_b_jit", 32 * 3 + 5, "jit"),
    )
    def test_last_batch_smaller_than_the_sub_batch(self, n, mode):
        x, y = _data(n)
        model = _model(mode, n=n)
        before = model.learner.get_weights()
        model.fit(x, y, batch_size=B, epochs=1, verbose=0)
        self._check_trained(model, n, 1, before)

    def test_online_reference_with_partial_batches(self):
        x, y = _data()
        model = _model("graph", online_reference=True)
        reference_before = model.reference.get_weights()
        before = model.learner.get_weights()
        model.fit(x, y, batch_size=B, epochs=1, verbose=0)
        self._check_trained(model, N, 1, before)
        after = model.reference.get_weights()
        self.assertTrue(
            any(not np.allclose(a, b) for a, b in zip(reference_before, after, strict=True))
        )

    @parameterized.named_parameters(("graph", "graph"), ("jit", "jit"))
    def test_super_batch_size_given_with_numpy(self, mode):
        x, y = _data()
        model = _model(mode, super_batch_size=B)
        before = model.learner.get_weights()
        model.fit(x, y, epochs=1, verbose=0)  # batch_size defaults to super_batch_size.
        self._check_trained(model, N, 1, before)
        with self.assertRaisesRegex(ValueError, "batch_size is the super-batch size B"):
            model.fit(x, y, batch_size=B // 2, epochs=1, verbose=0)

    @parameterized.named_parameters(("graph", "graph"), ("eager", "eager"), ("jit", "jit"))
    def test_partial_batch_selects_exactly_and_ignores_unselected_rows(self, mode):
        # One-hot inputs, bias-free learner and actor: example i moves only row i
        # of a kernel, so the rows that moved are exactly the rows trained on.
        # The reference's loss grows with i and the actor starts at zero, so
        # learnability keeps the lowest ids.
        n, size = 13, 8  # Batches of 8 and 5: keeps 0..3, then round(2.5) = 2 of 8..12.
        x = np.eye(n, dtype="float32")
        y = np.zeros(n, "int32")
        ref_kernel = np.stack([-np.arange(n, dtype="float32"), np.zeros(n, "float32")], 1)

        def dense(name, kernel):
            model = keras.Sequential(
                [keras.Input((n,)), keras.layers.Dense(2, use_bias=False)], name=name
            )
            model.layers[0].kernel.assign(kernel)
            return model

        learner = dense("learner", np.zeros((n, 2), "float32"))
        actor = dense("actor", np.zeros((n, 2), "float32"))
        model = ActiveLearner(
            learner,
            dense("reference", ref_kernel),
            actor=actor,
            policy="learnability",
            selection="topk",
            keep_fraction=0.5,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, **MODES[mode])
        model.fit(x, y, batch_size=size, epochs=1, shuffle=False, verbose=0)
        for trained in (learner, actor):
            moved = np.flatnonzero(np.abs(trained.layers[0].kernel.numpy()).sum(1) > 0)
            np.testing.assert_array_equal(moved, [0, 1, 2, 3, 8, 9], err_msg=trained.name)

    def test_partial_batch_loss_is_the_mean_over_the_real_selected_rows(self):
        # One full batch of 8 then a partial one of 4 (k = 2): the step's loss on
        # the partial batch must equal the plain mean loss over its 2 winners.
        x, y = _data(12)
        model = _model("graph", n=12, selection="topk")
        model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0, shuffle=False)
        learner = model.learner
        kernel_before = [w.copy() for w in learner.get_weights()]
        scores, _ = model.score(x[8:], y[8:])
        winners = np.argsort(-scores.numpy(), kind="stable")[:2]
        logits = learner(x[8:][winners])
        expected = LOSS(y[8:][winners], logits).numpy()
        accuracy = np.mean(np.argmax(logits, 1) == y[8:][winners])
        history = model.fit(x[8:], y[8:], batch_size=8, epochs=1, verbose=0, shuffle=False)
        self.assertAllClose(history.history["loss"][0], expected, rtol=1e-5)
        self.assertAllClose(history.history["accuracy"][0], accuracy)  # Padding not counted.
        self.assertNotAllClose(kernel_before[0], learner.get_weights()[0])

    def test_unknown_super_batch_size_says_what_to_pass(self):
        x, y = _data()
        model = _model("graph")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)  # Static size None.
        with self.assertRaisesRegex(ValueError, "super_batch_size=B.*drop_remainder=True"):
            model.fit(ds, epochs=1, verbose=0)


class CallbacksTest(tf.test.TestCase, parameterized.TestCase):
    def _fit(self, callbacks, epochs=2, **kwargs):
        x, y = _data()
        model = _model("graph")
        before = model.learner.get_weights()
        history = model.fit(
            x, y, batch_size=B, epochs=epochs, callbacks=callbacks, verbose=0, **kwargs
        )
        ran = len(history.epoch)
        self.assertGreaterEqual(ran, 1)
        counts = model.trained_counts.numpy()
        self.assertEqual(counts[0], 0)
        rows = int(np.ceil(N * (1.0 - kwargs.get("validation_split", 0.0))))  # As Keras splits.
        self.assertEqual(counts.sum(), ran * _expected_per_epoch(rows))
        self.assertEqual(counts[rows + 1 :].sum(), 0)
        after = model.learner.get_weights()
        self.assertTrue(any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)))
        return model, history, x

    def test_model_save_saves_a_loadable_learner(self):
        model, _, x = self._fit([], epochs=1)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    @parameterized.named_parameters(
        ("every_epoch", False),
        ("save_best_only", True),
    )
    def test_model_checkpoint_keras_file(self, best_only):
        path = os.path.join(self.get_temp_dir(), f"m_{best_only}.keras")
        checkpoint = keras.callbacks.ModelCheckpoint(path, monitor="loss", save_best_only=best_only)
        model, history, x = self._fit([checkpoint])
        loaded = keras.models.load_model(path)
        predicted = loaded.predict(x, verbose=0)
        self.assertEqual(predicted.shape, (N, 3))
        losses = history.history["loss"]
        if not best_only or losses[-1] <= min(losses):  # The file holds the last epoch.
            self.assertAllClose(predicted, model.predict(x, verbose=0))

    def test_model_checkpoint_weights_only(self):
        path = os.path.join(self.get_temp_dir(), "ckpt.weights.h5")
        checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)
        model, _, x = self._fit([checkpoint])
        fresh = _model("graph")
        fresh.load_weights(path)
        self.assertAllClose(fresh.predict(x, verbose=0), model.predict(x, verbose=0))

    def test_early_stopping(self):
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
        _, history, _ = self._fit([stop], epochs=5, validation_split=0.1)
        self.assertLess(len(history.epoch), 5)  # min_delta=10: no epoch improves enough.

    def test_backup_and_restore(self):
        backup = keras.callbacks.BackupAndRestore(os.path.join(self.get_temp_dir(), "backup"))
        self._fit([backup])

    def test_tensorboard(self):
        log_dir = os.path.join(self.get_temp_dir(), "tb")
        self._fit([keras.callbacks.TensorBoard(log_dir)])
        self.assertNotEmpty(tf.io.gfile.glob(os.path.join(log_dir, "train", "*")))

    def test_csv_logger(self):
        path = os.path.join(self.get_temp_dir(), "log.csv")
        self._fit([keras.callbacks.CSVLogger(path)])
        with open(path) as f:
            rows = f.read().splitlines()
        self.assertLen(rows, 3)  # Header and two epochs.
        self.assertIn("loss", rows[0])


if __name__ == "__main__":
    tf.test.main()
