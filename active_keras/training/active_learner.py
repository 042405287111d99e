"""`ActiveLearner`: a `keras.Model` that trains a learner on selected examples.

Each batch the model receives is a *super-batch* of `B` examples. The train
step scores every example with per-example losses of cheap models (a frozen
reference and a co-trained actor, or the learner itself), keeps
`b = round(keep_fraction * B)` of them with a selection rule, and updates the
learner (and the actor) on that sub-batch only.

Example:

```python
import keras
import active_keras

learner = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(256, activation="relu"),
                            keras.layers.Dense(10)])
reference = keras.models.load_model("reference.keras")  # small, pretrained
model = active_keras.ActiveLearner(learner, reference, policy="learnability",
                                   selection="sample", keep_fraction=0.5)
model.compile(optimizer="adam",
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"], jit_compile=True)
model.fit(super_batches, epochs=3)  # batches of B = 2b, drop_remainder=True
model.learner.save("learner.keras")
```

Distribution (`tf.distribute`): build and compile inside `strategy.scope()`;
Keras runs `train_step` once per replica on that replica's part of the
super-batch. With `selection_scope="local"` each replica selects from its own
part, with no communication; with `"global"` the scores and the super-batch are
all-gathered, every replica makes the same selection over the whole global
super-batch and trains on its share (every `R`-th) of the winners, so the
update equals the one-device update on the same global super-batch. Keras turns
XLA off for the whole step under a strategy (keras#19005); `jit_scoring=True`
still compiles each replica's scoring (forward passes + per-example losses)
with XLA. Under a mixed precision policy, per-example losses and scores are
computed in float32; with `mixed_float16` every optimizer is loss-scaled.
"""

import contextlib
import inspect

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from active_keras.selection import policies, selectors
from active_keras.training import checkpointing, replicas

METADATA_KEYS = ("sample_weight", "corrupted", "example_id")
SELECTION_SCOPES = ("local", "global")


def unpack_batch(data):
    """Splits a batch into `(x, y, sample_weight, metadata)`.

    Batches may be `(x, y)`, `(x, y, sample_weight)` or `(x, y, metadata)` where
    `metadata` is a dict with any of the keys `sample_weight`, `corrupted`
    (bool, True where the label was corrupted) and `example_id` (int64).
    """
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(
            "ActiveLearner expects batches (x, y), (x, y, sample_weight) or "
            f"(x, y, metadata_dict); got a batch of type {type(data).__name__}"
            + (f" with {len(data)} elements." if isinstance(data, (tuple, list)) else ".")
        )
    x, y = data[0], data[1]
    third = data[2] if len(data) == 3 else None
    if isinstance(third, dict) and set(third) <= set(METADATA_KEYS):
        metadata = dict(third)
        sample_weight = metadata.pop("sample_weight", None)
    else:
        metadata, sample_weight = {}, third
    return x, y, sample_weight, metadata


def _fresh_copy(model):
    """Same architecture as `model`, newly initialised and trainable weights."""
    copy = keras.models.clone_model(model)
    copy.trainable = True  # The config of a frozen reference carries trainable=False.
    return copy


def _copy_optimizer(optimizer, learning_rate_multiplier=1.0):
    # Copy the optimizer inside a LossScaleOptimizer; compile() re-wraps the copy.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    config = optimizer.get_config()
    lr = config.get("learning_rate")
    if learning_rate_multiplier != 1.0:
        if not isinstance(lr, (int, float)):
            raise ValueError(
                "Cannot scale a learning-rate schedule for the online reference; "
                "pass reference_optimizer= to compile()."
            )
        config["learning_rate"] = lr * learning_rate_multiplier
    return optimizer.__class__.from_config(config)


def _weights_of(sample_weight):
    """Sample weights from a metadata dict Keras passed as sample weights; others unchanged."""
    if isinstance(sample_weight, dict) and set(sample_weight) <= set(METADATA_KEYS):
        return sample_weight.get("sample_weight")
    return sample_weight


def _unreduced(identifier):
    """`(fn(y, y_pred) -> unreduced loss, dtype)` for one loss as `compile()` takes it."""
    loss = keras.losses.get(identifier)
    if isinstance(loss, keras.losses.Loss):
        return loss.call, getattr(loss, "dtype", None) or "float32"
    if not callable(loss):
        raise ValueError(f"Cannot use {identifier!r} as a loss.")

    def call(y_true, y_pred):  # As Keras wraps a loss function: ranks matched first.
        return loss(*_same_rank(y_true, y_pred))

    return call, "float32"


def _same_rank(a, b):
    """Drops (or, for a vector, adds) a trailing axis of size 1 so that ranks match."""
    if not (tf.is_tensor(a) and tf.is_tensor(b)) or a.shape.rank == b.shape.rank:
        return a, b
    if a.shape.rank == b.shape.rank + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.shape.rank == 1 else (tf.squeeze(a, -1), b)
    if b.shape.rank == a.shape.rank + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.shape.rank == 1 else (a, tf.squeeze(b, -1))
    return a, b


def _per_example_loss_fn(loss, loss_weights=None):
    """`fn(y, y_pred) -> float32 [B]`: `compile()`'s loss, unreduced, summed over outputs.

    `loss` is one loss for the whole output, or a list / dict of losses, one
    per output (`y` and `y_pred` indexed alike); `loss_weights` the same
    structure of weights (or one weight for one loss). `None` without a loss.
    """
    if loss is None:
        return None
    if isinstance(loss, (list, tuple, dict)):
        keys = list(loss) if isinstance(loss, dict) else list(range(len(loss)))
        weights = loss_weights if loss_weights is not None else {}
        parts = [
            ((key,), *_unreduced(loss[key]), weights[key] if key in weights else None)
            if isinstance(weights, dict)
            else ((key,), *_unreduced(loss[key]), weights[key])
            for key in keys
            if loss[key] is not None
        ]
    else:
        parts = [((), *_unreduced(loss), loss_weights)]

    def per_example(y, y_pred):
        total = None
        for path, fn, dtype, weight in parts:
            y_t, y_p = y, y_pred
            for key in path:
                y_t, y_p = y_t[key], y_p[key]
            y_t, y_p = (
                tf.nest.map_structure(lambda v, d=dtype: keras.ops.convert_to_tensor(v, dtype=d), t)
                for t in (y_t, y_p)
            )
            value = tf.cast(fn(y_t, y_p), tf.float32)
            if value.shape.rank > 1:
                value = tf.reduce_mean(value, axis=list(range(1, value.shape.rank)))
            if weight is not None:
                value = value * weight
            total = value if total is None else total + value
        return total

    return per_example


def _pad_rows(t, n, size):
    """Pads `t` along axis 0 from `n` rows to the static `size` with zeros (False)."""
    t = tf.convert_to_tensor(t)
    dtype = t.dtype
    if dtype == tf.bool:
        t = tf.cast(t, tf.int32)
    shape = [size, *t.shape[1:]]  # tf.pad with computed paddings loses the static shape.
    rest = tf.zeros([t.shape.rank - 1, 2], tf.int32)
    t = tf.pad(t, tf.concat([tf.stack([[0, size - n]]), rest], axis=0))
    t = tf.ensure_shape(t, shape)
    return tf.cast(t, tf.bool) if dtype == tf.bool else t


def _times_weight(weight, sample_weight):
    """`weight` `[b]` times the user's `sample_weight` (`[b]` or `[b, ...]`) when given."""
    if sample_weight is None:
        return weight
    sample_weight = tf.cast(sample_weight, tf.float32)
    extra = [1] * (sample_weight.shape.rank - 1)
    return sample_weight * tf.reshape(weight, [-1, *extra])


def _prepended(first, rest):
    """A generator yielding `first`, then the rest of the iterator `rest`."""
    yield first
    yield from rest


def _is_array_input(x):
    """Whether Keras batches `x` itself by `batch_size` (arrays, tensors, nests of them)."""
    flat = tf.nest.flatten(x) if isinstance(x, (dict, list, tuple)) else [x]
    return bool(flat) and all(isinstance(v, (np.ndarray, tf.Tensor)) for v in flat)


def _find_super_batch_size(x, batch_size):
    """`(B, x)` for `fit(x, batch_size=...)`: B from the arguments or the first batch.

    A generator is peeked at: the returned `x` yields the peeked batch first.
    """
    if x is None or isinstance(x, tf.distribute.DistributedDataset):
        return None, x
    if isinstance(x, tf.data.Dataset):  # The static size; None without drop_remainder.
        return tf.nest.flatten(x.element_spec)[0].shape[0], x
    if isinstance(x, keras.utils.PyDataset):
        return len(tf.nest.flatten(x[0])[0]), x
    if inspect.isgenerator(x) or (hasattr(x, "__next__") and not hasattr(x, "shape")):
        first = next(x)
        return len(tf.nest.flatten(first)[0]), _prepended(first, x)
    return batch_size or 32, x  # Arrays: Keras batches them by batch_size (default 32).


class _Untracked:
    """State of an `ActiveLearner` that Keras must not track: a plain object, not a Keras one.

    The frozen reference is neither in the wrapper's `weights` nor in its
    checkpoints (it lives in its own file); while `hide_reference` is set (in
    `save_weights` / `load_weights`, whose walk over the model's attributes
    reads `reference`) the wrapper reports none. The other fields are facts
    known once a step is traced, and the selected ids `replay` reads (a
    variable outside the model's weights).
    """

    def __init__(self):
        self.reference = None
        self.hide_reference = False
        self.selected_ids = None
        self.records_ids = False
        self.marks_corruption = False
        self.save_noted = False

    @contextlib.contextmanager
    def reference_hidden(self):
        self.hide_reference = True
        try:
            yield
        finally:
            self.hide_reference = False


@keras.saving.register_keras_serializable(package="active_keras")
class ActiveLearner(keras.Model):
    """Trains `learner` on the most useful part of each super-batch.

    Args:
        learner: The `keras.Model` being trained; `model.learner` after `fit()`.
        reference: Small frozen model whose per-example loss steers selection
            (policies `learnability`, `easy_reference`, `rho_loss`). Its weights
            are never updated and are not part of this model's weights or
            checkpoints: keep it in its own file. With `online_reference=True` it
            is instead trained on every whole super-batch (ClassAct-Online).
        actor: Small model co-trained on the selected sub-batches; scores for
            `learnability`. Defaults to a freshly initialised copy of the
            reference's architecture when the policy needs one.
        policy: A name from `active_keras.selection.policies` or a `Policy`.
        selection: `"topk"` (deterministic) or `"sample"` (Gumbel-top-k sampling
            without replacement from `softmax(score / temperature)`).
        keep_fraction: Fraction of each super-batch the learner trains on;
            `b = round(keep_fraction * B)` must satisfy `0 < b < B`.
        temperature: Softmax temperature for `selection="sample"` (and
            `"joint"`): a number, or a schedule of the learner's update count
            (a `keras.optimizers.schedules.LearningRateSchedule` or any
            `fn(step) -> temperature`), for a draw that softens or sharpens as
            training goes on; a scheduled temperature is logged as `temperature`.
        super_batch_size: If set, every batch must have exactly this size.
        online_reference: Train the reference online (ClassAct-Online).
        example_loss: Optional `fn(y, y_pred) -> [B]` per-example loss used for
            scoring instead of the compiled loss (ActiveCLIP scores pairs by
            `ClipTask.example_loss`, by default `-t z_img . z_txt` in logit units).
        seed: Seed for the sampling noise (a checkpointable `SeedGenerator`).
        selection_scope: Under `tf.distribute` with `R` replicas: `"local"`
            (each replica keeps `sub_batch_size(B / R)` of its own `B / R`
            examples; no communication; sampling noise differs per replica) or
            `"global"` (scores, and the super-batch itself, are all-gathered;
            one selection of `b = sub_batch_size(B)` over the global super-batch,
            identical on every replica; replica `r` trains on winners
            `r, r + R, ...`; `b` must be a multiple of `R`). Both are the same on
            one device.
        jit_scoring: Compile scoring (forward passes of the scoring models and
            their per-example losses) with `tf.function(jit_compile=True)` in
            each replica. `"auto"`: only under a non-TPU strategy with GPUs, where
            Keras turns XLA off for the step; `True` / `False`: always / never.
        reference_losses: Precomputed per-example losses of the frozen
            reference, a float32 vector indexed by `example_id` (see
            `active_keras.selection.reference_losses`). The step then looks each
            example's reference loss up (`tf.gather`, XLA-compatible) instead of
            running the reference over the super-batch; every batch must carry
            `metadata["example_id"]`. Valid only when an example's reference
            loss never changes: fixed data, no random augmentation. Also
            settable with `use_reference_losses()` before the first `fit()`.

    Under a strategy, `super_batch_size` is the global `B` over all replicas.
    """

    def __init__(
        self,
        learner,
        reference=None,
        actor=None,
        policy="learnability",
        selection="topk",
        keep_fraction=0.5,
        temperature=1.0,
        super_batch_size=None,
        online_reference=False,
        example_loss=None,
        seed=None,
        selection_scope="local",
        jit_scoring="auto",
        reference_losses=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if selection_scope not in SELECTION_SCOPES:
            raise ValueError(
                f"Unknown selection_scope {selection_scope!r}; choose from {SELECTION_SCOPES}."
            )
        if jit_scoring not in ("auto", True, False):
            raise ValueError(f"jit_scoring must be 'auto', True or False, got {jit_scoring!r}.")
        self.selection_scope = selection_scope
        self.jit_scoring = jit_scoring
        self._eager_jit_score = None
        self.policy = policies.get(policy)
        self.selection = selection
        self._select = selectors.get(selection)
        if not 0.0 < keep_fraction < 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1), got {keep_fraction}.")
        self.temperature_schedule = temperature if callable(temperature) else None
        first = float(temperature(0)) if callable(temperature) else temperature
        if selection == "sample" and not first > 0:
            raise ValueError(f"temperature must be > 0, got {first}.")
        self.keep_fraction = float(keep_fraction)
        self.temperature = temperature if callable(temperature) else float(temperature)
        self.super_batch_size = super_batch_size
        # B found by `fit()` (its batch_size, or the data's first batch) when
        # super_batch_size is None; pads partial super-batches to this size.
        self._fit_super_batch_size = None
        if super_batch_size is not None:
            self.sub_batch_size(super_batch_size)  # Fails early on b == 0 or b == B.
        # Which models exist: the policy's answer (`Policy.models`); `train.build_active_learner`
        # asks the same question to build them, nothing else decides it.
        self.model_set = self.policy.models(online_reference)
        if online_reference and reference_losses is not None:
            raise ValueError(
                "reference_losses are losses of a frozen reference; an online reference changes "
                "every step. Use one or the other."
            )
        looked_up = self.model_set.frozen_reference and reference_losses is not None
        if self.model_set.reference and not looked_up and reference is None:
            raise ValueError(
                f"Policy {self.policy.name!r} needs a reference model: pass reference=."
            )
        if self.model_set.actor and actor is None:
            if reference is None:
                raise ValueError(f"Policy {self.policy.name!r} needs an actor: pass actor=.")
            actor = _fresh_copy(reference)
        self.learner = learner
        self.actor = actor
        self.online_reference = bool(online_reference)
        self.example_loss = example_loss
        # Plain state Keras must not track (see `_Untracked`).
        self._untracked = _Untracked()
        if self.online_reference:
            # Trained online: a tracked sub-model, in `weights` and checkpoints.
            self._online_reference = reference
        else:
            if reference is not None:
                reference.trainable = False
            self._untracked.reference = reference
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.actor_optimizer = None
        self.reference_optimizer = None
        # The step is ours, so is its loss tracker (Keras' own is left out of `metrics`).
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.score_tracker = keras.metrics.Mean(name="score")
        # Selection strength: the spread of each step's super-batch scores (means over steps).
        self.score_std_tracker = keras.metrics.Mean(name="score_std")
        self.score_min_tracker = keras.metrics.Mean(name="score_min")
        self.score_max_tracker = keras.metrics.Mean(name="score_max")
        self.actor_loss_tracker = keras.metrics.Mean(name="actor_loss")
        self.corrupted_tracker = keras.metrics.Mean(name="selected_corrupted")
        self.temperature_tracker = (
            keras.metrics.Mean(name="temperature") if self.temperature_schedule else None
        )
        self._per_example_loss = None  # From compile()'s loss.
        if super_batch_size is not None:
            # Ids of the last selected sub-batch, read by `training.replay` (one device only).
            self._untracked.selected_ids = tf.Variable(
                tf.zeros([self.sub_batch_size(super_batch_size)], tf.int64),
                trainable=False,
                name="last_selected_ids",
            )
        self.reference_loss_table = None
        if reference_losses is not None:
            self.use_reference_losses(reference_losses)
        # Built models (functional, Sequential with an Input) need no data to build the wrapper.
        if all(m.built for m in [learner, *self._small_models()]):
            self.built = True

    @property
    def reference(self):
        """The reference model (frozen, or trained online); `None` without one."""
        if self.online_reference:
            return self._online_reference
        return None if self._untracked.hide_reference else self._untracked.reference

    @property
    def last_selected_ids(self):
        """int64 `[b]` ids of the last step's selected sub-batch (-1 marks padding).

        `None` when `super_batch_size` is not set. Not a weight, not checkpointed.
        """
        return self._untracked.selected_ids

    @property
    def records_selected_ids(self):
        """Whether the traced step writes `last_selected_ids` (one device, batches with ids)."""
        return self._untracked.records_ids

    @property
    def marks_corruption(self):
        """Whether the training data marks corrupted labels (known once a step is traced)."""
        return self._untracked.marks_corruption

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save_weights`, without the frozen reference (it lives in its own file)."""
        with self._untracked.reference_hidden():
            return super().save_weights(filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights` of a `save_weights()` file (no frozen reference in it)."""
        with self._untracked.reference_hidden():
            return super().load_weights(filepath, *args, **kwargs)

    # ----------------------------------------------------------------- set-up

    def use_reference_losses(self, table):
        """Scores with precomputed reference losses (`table[example_id]`) from now on.

        Args:
            table: float32 vector of the frozen reference's per-example loss,
                indexed by example id (ids absent from the data may hold NaN).
        """
        if not self.model_set.frozen_reference:
            raise ValueError(
                f"Policy {self.policy.name!r} does not read reference losses; "
                "reference_losses would not be used."
            )
        if getattr(self._select, "uses_context", False):
            raise ValueError(
                f"Selection {self.selection!r} reads the reference's outputs, not only its "
                "losses: it cannot use precomputed reference losses."
            )
        if getattr(self.example_loss, "depends_on_batch", False):
            raise ValueError(
                f"example_loss {getattr(self.example_loss, '__name__', self.example_loss)!r} "
                "depends on the rest of the super-batch: it cannot be precomputed per example."
            )
        if getattr(self, "train_function", None) is not None:
            raise ValueError("Set reference losses before the first fit().")
        table = np.asarray(table, np.float32)
        if table.ndim != 1:
            raise ValueError(f"reference_losses must be a vector indexed by id, got {table.shape}.")
        self.reference_loss_table = table

    def sub_batch_size(self, super_batch_size):
        """Returns `b` for a super-batch of `super_batch_size`, checking 0 < b < B."""
        b = int(round(self.keep_fraction * super_batch_size))
        if not 0 < b < super_batch_size:
            raise ValueError(
                f"keep_fraction={self.keep_fraction} keeps b={b} of a super-batch of "
                f"B={super_batch_size}; selection needs 0 < b < B."
            )
        return b

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        *args,
        actor_optimizer=None,
        reference_optimizer=None,
        **kwargs,
    ):
        """Like `keras.Model.compile`, plus optimizers for the small models.

        Args:
            optimizer: The learner's optimizer.
            loss: The training loss, as for `keras.Model.compile` (a name, a
                function `fn(y, y_pred)` or a `keras.losses.Loss`; a list or
                dict of them for several outputs). Scoring and the small
                models' updates use its unreduced per-example values
                (`Loss.call`), weighted by `loss_weights`.
            loss_weights: As for `keras.Model.compile`.
            actor_optimizer: The actor's; defaults to a copy of `optimizer`.
            reference_optimizer: For `online_reference=True`; defaults to a copy
                of `optimizer` with twice its learning rate (METHOD.md).
            *args: Passed on to `keras.Model.compile`.
            **kwargs: Passed on to `keras.Model.compile`.
        """
        super().compile(optimizer, loss, loss_weights, *args, **kwargs)
        self._per_example_loss = _per_example_loss_fn(loss, loss_weights)
        # Keras loss-scales the learner's optimizer under mixed_float16; the
        # small models' float16 gradients need the same protection.
        loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if self.actor is not None:
            self.actor_optimizer = self._maybe_loss_scaled(
                keras.optimizers.get(actor_optimizer or _copy_optimizer(self.optimizer)),
                loss_scaled,
            )
        if self.online_reference:
            self.reference_optimizer = self._maybe_loss_scaled(
                keras.optimizers.get(reference_optimizer or _copy_optimizer(self.optimizer, 2.0)),
                loss_scaled,
            )
        self._build_optimizers()

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """Like `keras.Model.fit`; `batch_size` is the super-batch size `B`.

        Any input `keras.Model.fit` takes works: NumPy arrays of any length (with
        `validation_split`), `tf.data` with or without `drop_remainder`,
        `keras.utils.PyDataset` and generators. Without `super_batch_size=`, `B`
        is `batch_size` for arrays (Keras' default 32 when not given), the first
        batch's size for a `PyDataset` or a generator, and the static batch size
        of a `tf.data` dataset (unknown without `drop_remainder=True`: then pass
        `super_batch_size=`). Batches smaller than `B` (a partial last batch) are
        padded to `B` and trained on `round(keep_fraction * n)` of their `n` real
        rows (at least one); see `_partial_train_step`.
        """
        if self.super_batch_size is None:
            size, x = _find_super_batch_size(x, batch_size)
            if size is not None and size != self._fit_super_batch_size:
                self.sub_batch_size(size)  # Fails early on b == 0 or b == B.
                if self._fit_super_batch_size is not None:
                    self.train_function = None  # Traced for another B.
                self._fit_super_batch_size = size
        elif _is_array_input(x):
            if batch_size is None:
                batch_size = self.super_batch_size
            elif batch_size != self.super_batch_size:
                raise ValueError(
                    f"fit(batch_size={batch_size}) differs from super_batch_size="
                    f"{self.super_batch_size}: batch_size is the super-batch size B."
                )
        if "validation_data" in kwargs:
            kwargs["validation_data"] = self._distributable(kwargs["validation_data"])
        return super().fit(self._distributable(x), y, batch_size, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """Like `keras.Model.evaluate` (batches may carry metadata, as for `fit()`)."""
        return super().evaluate(self._distributable(x), *args, **kwargs)

    def _distributable(self, data):
        """`data` as Keras can build this model from under several replicas.

        Before the first step Keras MEAN-reduces a first distributed batch across
        replicas (to build the model symbolically), which fails on bool tensors
        such as the `corrupted` marks: a `tf.data` dataset gets them as int32
        (`replicas.bools_as_ints`); a distributed dataset must bring them so.
        """
        if self.distribute_strategy.num_replicas_in_sync == 1:
            return data
        if isinstance(data, tf.data.Dataset):
            return replicas.bools_as_ints(data)
        if isinstance(data, tf.distribute.DistributedDataset) and replicas.has_bools(
            data.element_spec
        ):
            raise ValueError(
                "A distributed dataset with bool tensors: Keras cannot reduce them across "
                "replicas. Give label-noise marks ('corrupted') as int32 (the datasets of "
                "active_keras.training.distribute do), or pass the tf.data.Dataset itself to fit()."
            )
        return data

    @staticmethod
    def _maybe_loss_scaled(optimizer, loss_scaled):
        if loss_scaled and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def build(self, input_shape):
        for model in self._small_models():
            if not model.built:
                model.build(input_shape)
        if not self.learner.built:
            self.learner.build(input_shape)
        self.built = True
        self._build_optimizers()

    def _small_models(self):
        return [m for m in (self.actor, self.reference) if m is not None]

    def _optimizer_pairs(self):
        pairs = [(self.optimizer, self.learner), (self.actor_optimizer, self.actor)]
        if self.online_reference:
            pairs.append((self.reference_optimizer, self.reference))
        return [(opt, model) for opt, model in pairs if opt is not None and model is not None]

    def _build_optimizers(self):
        # Each optimizer holds slots for its own model only (Keras would build
        # the main one over every trainable variable, actor included).
        for optimizer, model in self._optimizer_pairs():
            if not optimizer.built and model.built:
                optimizer.build(model.trainable_variables)

    @property
    def losses(self):
        # The learner's regularisation losses; the small models' go into their own updates.
        return self.learner.losses

    @property
    def metrics(self):
        # Keras' metrics with our loss tracker in place of Keras' own (the steps are ours).
        others = [m for m in super().metrics if m.name != "loss"]
        return [self.loss_tracker, *others]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`keras.Model.compile`'s loss; a metadata dict in place of sample weights is read.

        Keras reads the third element of a batch as sample weights when it builds
        the model from a first batch; here that may be the metadata dict.
        """
        sample_weight = _weights_of(sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """`keras.Model.compute_metrics`; a metadata dict in place of sample weights is read."""
        return super().compute_metrics(x, y, y_pred, sample_weight=_weights_of(sample_weight))

    def models(self):
        """`{"learner": ..., "actor": ..., "reference": ...}`: the models present."""
        models = {"learner": self.learner, "actor": self.actor, "reference": self.reference}
        return {name: model for name, model in models.items() if model is not None}

    def step_roles(self):
        """What each model does in a step: the facts the FLOP ledger counts.

        Returns:
            A dict: `scored_by` (models run over the whole super-batch to score
            it), `trained_on_sub_batch`, `trained_on_super_batch` (model names)
            and `looked_up` (`{model: examples}` whose loss was computed once,
            before the run, and is looked up instead).
        """
        scored_by, looked_up = tuple(self.policy.requires), {}
        if self.reference_loss_table is not None:
            scored_by = tuple(m for m in scored_by if m != "reference")
            looked_up["reference"] = int(np.isfinite(self.reference_loss_table).sum())
        return {
            "scored_by": scored_by,
            # An actor given without a policy that reads it still trains (and costs).
            "trained_on_sub_batch": ("learner",) + (("actor",) if self.actor is not None else ()),
            "trained_on_super_batch": ("reference",) if self.model_set.online_reference else (),
            "looked_up": looked_up,
        }

    def checkpointable_state(self):
        """The training state of a run: `{name: variable, or {position: variable}}`.

        The learner, its optimizer, the sampling seed, the metrics and, when
        present, the actor and its optimizer and an online reference and its
        optimizer; never a frozen reference (it lives in its own file).
        Variables are keyed by position, not by Keras path: paths carry
        automatic names ("adam_1/...") that depend on what else the process
        built before; a model's variable order is fixed by its architecture.
        """
        unbuilt = [o for o in (self.optimizer, self.actor_optimizer) if o and not o.built]
        if not self.built or unbuilt:
            raise ValueError("Build and compile the ActiveLearner before taking its state.")
        state = {
            "learner": checkpointing.by_position(self.learner.variables),
            "optimizer": checkpointing.by_position(self.optimizer.variables),
            "sampling_seed": self.seed_generator.state,
            "metrics": checkpointing.metric_variables(self),
        }
        if self.actor is not None:
            state["actor"] = checkpointing.by_position(self.actor.variables)
            state["actor_optimizer"] = checkpointing.by_position(self.actor_optimizer.variables)
        if self.online_reference:
            state["reference"] = checkpointing.by_position(self.reference.variables)
            state["reference_optimizer"] = checkpointing.by_position(
                self.reference_optimizer.variables
            )
        return state

    def call(self, inputs, training=False):
        return self.learner(inputs, training=training)

    # ------------------------------------------------------------- train step

    def per_example_loss(self, y, y_pred):
        """Per-example loss from the compiled loss, unreduced, as float32 `[B]`.

        Calls the unreduced `call` of each loss given to `compile()` (weighted
        by its `loss_weights`); no loss is written by hand. Like
        `Loss.__call__`, inputs are first cast to the loss's dtype (float32),
        so under a mixed precision policy the loss is computed in float32.
        """
        if self._per_example_loss is None:
            raise ValueError("ActiveLearner needs a loss: pass loss= to compile().")
        return self._per_example_loss(y, y_pred)

    def example_losses(self, y, y_pred):
        """The per-example loss used for scoring: `example_loss` if given, else the compiled one."""
        if self.example_loss is not None:
            # float16 / bfloat16 outputs of a mixed policy: score in float32.
            y_pred = tf.nest.map_structure(
                lambda v: tf.cast(v, tf.float32) if v.dtype.is_floating else v, y_pred
            )
            return tf.cast(self.example_loss(y, y_pred), tf.float32)
        return self.per_example_loss(y, y_pred)

    def score(self, x, y, example_id=None):
        """Scores a super-batch under the policy.

        With `jit_scoring` in effect this runs as its own XLA computation
        (`tf.function(jit_compile=True)`) on the calling replica's device.
        With precomputed reference losses, `example_id` (`[B]` ids) looks
        them up and the reference model is not run.

        Returns:
            `(scores, context)`: float32 scores `[B]`, and a dict with the
            per-example `losses` and the model `outputs` over the super-batch
            that scoring computed (selectors such as joint selection read them).
            Outputs keep the models' compute dtype (float16 / bfloat16 under a
            mixed policy); losses and scores are float32.
        """
        if self.reference_loss_table is not None and example_id is None:
            raise ValueError(
                "Scoring with precomputed reference losses needs each example's id: give "
                "batches as (x, y, {'example_id': ids}) (plain NumPy fit() has no ids), or "
                "drop reference_losses."
            )
        if not self._use_jit_scoring():
            return self._score(x, y, example_id)
        if tf.distribute.in_cross_replica_context() and not tf.distribute.has_strategy():
            # Plain (default-strategy) calls: one cached function.
            if self._eager_jit_score is None:
                self._eager_jit_score = tf.function(self._score, jit_compile=True)
            return self._eager_jit_score(x, y, example_id)
        # Inside a replica: a fresh function per trace, so that each replica
        # traces its own copy, capturing its own copies of mirrored variables.
        return tf.function(self._score, jit_compile=True)(x, y, example_id)

    def _use_jit_scoring(self):
        if self.jit_scoring != "auto":
            return self.jit_scoring
        strategy = tf.distribute.get_strategy()
        return (
            tf.distribute.has_strategy()
            and not replicas.is_tpu_strategy(strategy)  # TPUs compile the whole step.
            and bool(tf.config.list_logical_devices("GPU"))  # Keras keeps CPUs off XLA too.
        )

    def _score(self, x, y, example_id=None):
        models = {"learner": self.learner, "actor": self.actor, "reference": self.reference}
        looked_up = {}
        if self.reference_loss_table is not None:
            ids = tf.cast(example_id, tf.int32)
            looked_up["reference"] = tf.gather(tf.constant(self.reference_loss_table), ids)
        outputs = {
            name: tf.nest.map_structure(tf.stop_gradient, models[name](x, training=False))
            for name in self.policy.requires
            if name not in looked_up
        }
        losses = {name: self.example_losses(y, out) for name, out in outputs.items()}
        losses.update(looked_up)
        first = tf.nest.flatten(x)[0]
        batch_size = first.shape[0] if first.shape[0] is not None else tf.shape(first)[0]
        scores = tf.stop_gradient(self.policy(losses, batch_size))
        return scores, {"losses": losses, "outputs": outputs, "y": y}

    def select(self, scores, k, context=None):
        """Indices of the `k` examples to train on.

        Args:
            scores: float32 `[B]` from `score()`.
            k: Sub-batch size.
            context: The dict `score()` returned; passed to selectors that
                accept a `context` argument (for example joint selection).
        """
        kwargs = {"temperature": self.current_temperature(), "seed": self._selection_seed()}
        if getattr(self._select, "uses_context", False):
            kwargs["context"] = context
        return self._select(scores, k, **kwargs)

    def current_temperature(self):
        """The sampling temperature of the next update (a float32 tensor if scheduled)."""
        if self.temperature_schedule is None:
            return self.temperature
        optimizer = getattr(self, "optimizer", None)  # None before compile().
        step = optimizer.iterations if optimizer is not None else 0
        return tf.cast(self.temperature_schedule(step), tf.float32)

    def preview_selection(self, x, y, example_id=None):
        """What a step would select from a super-batch, without training or using up noise.

        The seed generator's state is put back afterwards, so that a preview (a
        selection log, say) does not change the sampling noise of the training
        steps.

        Returns:
            `(scores, index, context)`: float32 scores `[B]`, the indices of the
            `b` selected examples, and the context `score()` returned.
        """
        scores, context = self.score(x, y, example_id)
        state = np.array(self.seed_generator.state.numpy())
        index = self.select(scores, self.sub_batch_size(int(scores.shape[0])), context)
        self.seed_generator.state.assign(state)
        return scores, index, context

    def _selection_seed(self):
        _, count, replica_id = replicas.in_sync()
        if self.selection_scope == "local" and count > 1:
            return replicas.ReplicaSeed(self.seed_generator, replica_id)
        # Global selection: the same state on every replica gives the same noise.
        return self.seed_generator

    def _check_batch(self, x, y):
        """Trace-time checks that give clear errors for malformed batches.

        Returns the size of this replica's part of the super-batch.
        """
        first = tf.nest.flatten(x)[0]
        size = first.shape[0]
        if size is None:
            raise ValueError(
                "The super-batch size is unknown (None). Selection needs a static "
                "size: batch the dataset with drop_remainder=True."
            )
        n_replicas = replicas.num_replicas()
        if self.super_batch_size is not None and size * n_replicas != self.super_batch_size:
            raise ValueError(
                f"Got a super-batch of {size * n_replicas} examples"
                + (f" ({size} on each of {n_replicas} replicas)" if n_replicas > 1 else "")
                + f"; this ActiveLearner was configured with "
                f"super_batch_size={self.super_batch_size}."
            )
        for label in tf.nest.flatten(y):
            if label.shape[0] is not None and label.shape[0] != size:
                raise ValueError(f"Got {label.shape[0]} labels for a super-batch of {size}.")
        expected = getattr(self.learner, "input_shape", None)
        if isinstance(expected, tuple) and not isinstance(x, (dict, list, tuple)):
            if len(expected) != len(first.shape) or any(
                e is not None and e != g for e, g in zip(expected[1:], first.shape[1:], strict=True)
            ):
                raise ValueError(
                    f"Inputs of shape {tuple(first.shape)[1:]} do not match the "
                    f"learner's input shape {tuple(expected)[1:]}."
                )
        return size

    def _train_small(self, model, optimizer, x, y, sample_weight):
        with tf.GradientTape() as tape:
            per_example = self.per_example_loss(y, model(x, training=True))
            if sample_weight is not None:
                per_example = per_example * tf.cast(sample_weight, tf.float32)
            loss = tf.reduce_mean(per_example)
            if model.losses:
                loss += tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
            # Gradients are summed over replicas: divide by their number.
            scaled = optimizer.scale_loss(replicas.scale_loss(loss))
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def _select_sub_batch(self, x, y, sample_weight, corrupted, size, example_id=None):
        """Scores and selects; returns this replica's `(x, y, sw, corrupted, scores, b)`."""
        context, count, _ = replicas.in_sync()
        scores, score_context = self.score(x, y, example_id)
        self._track_score_spread(scores)
        if self.selection_scope == "local" or count == 1:
            b = self.sub_batch_size(size)
            index = self.select(scores, b, score_context)
            if example_id is not None and self.last_selected_ids is not None and count == 1:
                self.last_selected_ids.assign(tf.cast(tf.gather(example_id, index), tf.int64))
                self._untracked.records_ids = True  # A trace-time fact, for replay.

            def take(t):
                return None if t is None else tf.gather(t, index)

            selected = tf.nest.map_structure(take, (x, y, sample_weight, corrupted))
            return (*selected, tf.gather(scores, index), b)

        b_global = self.sub_batch_size(size * count)
        if b_global % count:
            raise ValueError(
                f"Global selection splits the b={b_global} selected examples evenly over "
                f"{count} replicas; choose keep_fraction and the super-batch size so that "
                f"b is a multiple of {count}."
            )
        all_scores, index = replicas.select_globally(
            context,
            lambda all_scores, all_context: self.select(all_scores, b_global, all_context),
            scores,
            score_context if getattr(self._select, "uses_context", False) else None,
        )
        selected, selected_scores = replicas.share_of_winners(
            context, index, all_scores, (x, y, sample_weight, corrupted)
        )
        return (*selected, selected_scores, b_global // count)

    def _update_on_sub_batch(self, x_sel, y_sel, sample_weight, count):
        """Updates the learner (and the actor) on the selected sub-batch; returns `y_pred`.

        `count` is how many selected examples the loss tracker counts.
        """
        # Learner: forward and gradient over the selected sub-batch only.
        with tf.GradientTape() as tape:
            y_pred = self.learner(x_sel, training=True)
            loss = self.compute_loss(
                x=x_sel, y=y_sel, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            self.loss_tracker.update_state(replicas.unscale_loss(loss), sample_weight=count)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.learner.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        if self.actor is not None:
            actor_loss = self._train_small(
                self.actor, self.actor_optimizer, x_sel, y_sel, sample_weight
            )
            self.actor_loss_tracker.update_state(actor_loss)
        return y_pred

    def train_step(self, data):
        x, y, sample_weight, metadata = unpack_batch(data)
        static = tf.nest.flatten(x)[0].shape[0]
        padded = self._padded_size()
        # A batch of unknown static size, or (eagerly, where every size is known)
        # a partial one: padded to B. Static full batches take the path below.
        if static is None or (tf.executing_eagerly() and padded and static < padded):
            return self._partial_train_step(x, y, sample_weight, metadata)
        size = self._check_batch(x, y)
        x_sel, y_sel, sw_sel, corrupted_sel, selected_scores, b = self._select_sub_batch(
            x, y, sample_weight, metadata.get("corrupted"), size, metadata.get("example_id")
        )

        y_pred = self._update_on_sub_batch(x_sel, y_sel, sw_sel, b)
        if self.online_reference:
            self._train_small(self.reference, self.reference_optimizer, x, y, sample_weight)

        self.score_tracker.update_state(tf.reduce_mean(selected_scores))
        # A trace-time fact: whether this data marks corrupted labels at all.
        self._untracked.marks_corruption = "corrupted" in metadata
        if corrupted_sel is not None:
            self.corrupted_tracker.update_state(tf.cast(corrupted_sel, tf.float32))
        return replicas.step_logs(self.compute_metrics(x_sel, y_sel, y_pred, sample_weight=sw_sel))

    # ------------------------------------------------ partial super-batches

    def _padded_size(self):
        """`B` for batches of unknown static size: `super_batch_size`, else what `fit()` found."""
        return self.super_batch_size or self._fit_super_batch_size

    def _partial_train_step(self, x, y, sample_weight, metadata):
        """Train step for a batch of dynamic size `n <= B` (NumPy, PyDataset, generator input).

        The batch is padded with zero rows to the static size `B`, so every shape
        in the step stays static (under XLA one program is compiled per distinct
        `n`, usually two: full and last). Padded rows score `-inf` and are never
        trained on. Of the static `b = round(keep_fraction * B)` sub-batch rows,
        the first `k = max(1, round(keep_fraction * n))` are the selection among
        the real rows (`top_k` and Gumbel-top-k return winners in rank order, so
        they are exactly the selection of `k` of the `n`); the others get sample
        weight 0 and the `k` get `b / k` times their weight, so the loss is the
        mean over the `k` real selected rows. A full batch (`n = B`) selects as
        a static one does.
        """
        size = self._padded_size()
        if size is None:
            raise ValueError(
                "The super-batch size is unknown (None) and could not be found from fit(). "
                "Selection needs a static size B: pass super_batch_size=B to ActiveLearner, "
                "fit(x, y, batch_size=B) for arrays, or batch the dataset with "
                "drop_remainder=True."
            )
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync > 1:
            raise ValueError(
                "Under a tf.distribute strategy every super-batch needs a static size: batch "
                "the dataset with drop_remainder=True (see active_keras.training.distribute)."
            )
        if getattr(self._select, "uses_context", False):
            raise ValueError(
                f"Selection {self.selection!r} needs full super-batches of a static size: batch "
                "the dataset with drop_remainder=True."
            )
        n = tf.shape(tf.nest.flatten(x)[0])[0]
        if not self.jit_compile:  # XLA ignores asserts (and logs that it does).
            check = tf.debugging.assert_less_equal(
                n, size, message=f"ActiveLearner got a batch larger than its super-batch B={size}"
            )
            with tf.control_dependencies([check]):
                n = tf.identity(n)

        def pad(t):
            return None if t is None else _pad_rows(t, n, size)

        corrupted, example_id = metadata.get("corrupted"), metadata.get("example_id")
        x, y, sample_weight, corrupted, example_id = tf.nest.map_structure(
            pad, (x, y, sample_weight, corrupted, example_id)
        )
        self._check_batch(x, y)
        valid = tf.range(size) < n
        b = self.sub_batch_size(size)
        k = tf.cast(tf.round(self.keep_fraction * tf.cast(n, tf.float64)), tf.int32)
        k = tf.clip_by_value(k, 1, b)

        scores, context = self.score(x, y, example_id)
        self._track_score_spread(scores, valid)
        scores = tf.where(valid, scores, tf.constant(-np.inf, scores.dtype))
        index = self.select(scores, b, context)
        keep = (tf.range(b) < k) & tf.gather(valid, index)
        keep_f = tf.cast(keep, tf.float32)
        count = tf.reduce_sum(keep_f)
        if example_id is not None and self.last_selected_ids is not None:
            ids = tf.cast(tf.gather(example_id, index), tf.int64)
            self.last_selected_ids.assign(tf.where(keep, ids, tf.constant(-1, tf.int64)))

        def take(t):
            return None if t is None else tf.gather(t, index)

        x_sel, y_sel, sw_sel, corrupted_sel = tf.nest.map_structure(
            take, (x, y, sample_weight, corrupted)
        )
        weight = _times_weight(keep_f * (b / tf.maximum(count, 1.0)), sw_sel)

        y_pred = self._update_on_sub_batch(x_sel, y_sel, weight, count)
        if self.online_reference:
            valid_f = tf.cast(valid, tf.float32)
            whole = _times_weight(valid_f * (size / tf.cast(n, tf.float32)), sample_weight)
            self._train_small(self.reference, self.reference_optimizer, x, y, whole)

        real_scores = tf.where(keep, tf.cast(tf.gather(scores, index), tf.float32), 0.0)
        self.score_tracker.update_state(tf.reduce_sum(real_scores) / tf.maximum(count, 1.0))
        self._untracked.marks_corruption = "corrupted" in metadata
        if corrupted_sel is not None:
            self.corrupted_tracker.update_state(
                tf.cast(corrupted_sel, tf.float32), sample_weight=keep_f
            )
        return self._partial_metrics(x_sel, y_sel, y_pred, weight, keep_f, sw_sel is None)

    def _partial_metrics(self, x, y, y_pred, weight, keep, unweighted):
        """`compute_metrics` that leaves out padding and unselected rows.

        Keras updates compiled `metrics` (as opposed to `weighted_metrics`)
        without sample weights. Without user sample weights (so both kinds are
        unweighted) and with one output, every compiled metric is updated with
        the 0/1 weight `keep` instead; with user sample weights, `metrics=`
        still count the whole sub-batch (use `weighted_metrics=`).
        """
        compiled = [m for m in self.metrics if m.name == "compile_metrics"]
        if not (unweighted and len(compiled) == 1 and tf.is_tensor(y_pred) and tf.is_tensor(y)):
            return self.compute_metrics(x, y, y_pred, sample_weight=weight)
        if not compiled[0].built:
            compiled[0].build(y, y_pred)
        for metric in compiled[0].metrics:
            metric.update_state(y, y_pred, sample_weight=keep)
        return self.get_metrics_result()

    def test_step(self, data):
        # `keras.Model.test_step`, with our loss tracker.
        x, y, sample_weight, _ = unpack_batch(data)
        y_pred = self(x, training=False)
        loss = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        self.loss_tracker.update_state(
            replicas.unscale_loss(loss), sample_weight=tf.nest.flatten(x)[0].shape[0]
        )
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        selection_only = {m.name for m in self._selection_trackers()}
        return replicas.step_logs({k: v for k, v in logs.items() if k not in selection_only})

    def _track_score_spread(self, scores, valid=None):
        """Logs the std, min and max of one step's scores (over the `valid` rows when given).

        With `selection="sample"` the std over the temperature sets how strongly
        selection prefers high scores; `score_std`, `score_min` and `score_max`
        are their means over the steps of an epoch in the fit logs.
        """
        scores = tf.cast(scores, tf.float32)
        weight = tf.ones_like(scores) if valid is None else tf.cast(valid, tf.float32)
        count = tf.maximum(tf.reduce_sum(weight), 1.0)
        mean = tf.reduce_sum(weight * scores) / count
        std = tf.sqrt(tf.reduce_sum(weight * tf.square(scores - mean)) / count)
        self.score_std_tracker.update_state(std)
        inf = tf.constant(np.inf, tf.float32)
        self.score_min_tracker.update_state(tf.reduce_min(tf.where(weight > 0, scores, inf)))
        self.score_max_tracker.update_state(tf.reduce_max(tf.where(weight > 0, scores, -inf)))
        if self.temperature_tracker is not None:
            self.temperature_tracker.update_state(self.current_temperature())

    def _selection_trackers(self):
        return (
            self.score_tracker,
            self.score_std_tracker,
            self.score_min_tracker,
            self.score_max_tracker,
            self.actor_loss_tracker,
            self.corrupted_tracker,
        ) + ((self.temperature_tracker,) if self.temperature_tracker is not None else ())

    def get_metrics_result(self):
        # Report only what this run measures: no actor loss without an actor,
        # no corrupted fraction when the data marks no corruption.
        results = super().get_metrics_result()
        if self.actor is None:
            results.pop("actor_loss", None)
        if not self.marks_corruption:
            results.pop("selected_corrupted", None)
        return results

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the learner, the product: `model.save(path)` is `model.learner.save(path)`.

        So `ModelCheckpoint("m.keras")` (`save_weights_only=False`) writes the
        learner, which `keras.models.load_model` loads as a plain Keras model
        that predicts as this wrapper does. The actor, the optimizers' state and
        the frozen reference are not in that file; to resume training use
        `save_weights()` (`ModelCheckpoint(..., save_weights_only=True)`,
        `BackupAndRestore`), which hold the learner and the actor (never the
        frozen reference).
        """
        if not self._untracked.save_noted:
            logging.warning(
                "ActiveLearner.save() saves the learner (model.learner) to %s: load it with "
                "keras.models.load_model. The actor and the reference are not saved with it.",
                filepath,
            )
            self._untracked.save_noted = True
        if zipped is not None:
            kwargs["zipped"] = zipped
        return self.learner.save(filepath, overwrite=overwrite, **kwargs)

    def get_config(self):
        raise NotImplementedError(
            "The ActiveLearner wrapper has no config: model.save() saves model.learner (a plain "
            "Keras model); use save_weights() to checkpoint training."
        )
