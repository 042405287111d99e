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

import inspect

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras.src import tree
from keras.src.losses.loss import scale_loss_for_distribution, unscale_loss_for_distribution

from active_keras.selection import policies, selectors

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


def _is_tpu_strategy(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


class _ReplicaSeed(keras.random.SeedGenerator):
    """Draws seeds from `generator`, offset by the replica id.

    Under local selection every replica would otherwise read the same
    (mirrored) generator state and draw identical sampling noise. No state of
    its own: `__init__` deliberately skips `SeedGenerator`'s variable.
    """

    def __init__(self, generator, replica_id):  # pylint: disable=super-init-not-called
        self._generator = generator
        self._replica_id = replica_id

    def next(self, ordered=True):
        seed = self._generator.next(ordered)
        offset = tf.stack([tf.cast(self._replica_id, seed.dtype), tf.zeros((), seed.dtype)])
        return seed + offset


def _multi_worker_logs(logs):
    """Step logs as `[1]` tensors in multi-worker mode (keras 3, tensorflow#72388).

    In multi-worker mode Keras reduces step outputs with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalars every
    `train_step` returns ("Invalid reduction dimension 0 for input with 0
    dimensions"). The values are synchronised metric results; a `[1]` shape
    makes that reduce a plain mean, back to a scalar.
    """
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    ):
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)
    return logs


def _all_gather(context, structure):
    """`all_gather` along the batch axis; bool tensors travel as int32, `None` stays."""
    flat = tf.nest.flatten(structure)
    present = [t for t in flat if t is not None]
    sent = [tf.cast(t, tf.int32) if t.dtype == tf.bool else t for t in present]
    local_devices = tf.distribute.get_strategy().extended.worker_devices
    if len(local_devices) == 1 and any(not t.device for t in sent):
        # With one replica per worker, MultiWorkerMirroredStrategy gathers to
        # each tensor's `.device` and fails on unplaced ones ("destinations
        # can not be empty"): pin them to this worker's device.
        with tf.device(local_devices[0]):
            sent = [tf.identity(t) for t in sent]
    got = iter(context.all_gather(sent, axis=0) if sent else [])
    out = [None if t is None else next(got) for t in flat]
    out = [
        o if t is None or t.dtype != tf.bool else tf.cast(o, tf.bool)
        for t, o in zip(flat, out, strict=True)
    ]
    return tf.nest.pack_sequence_as(structure, out)


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
        temperature: Softmax temperature for `selection="sample"`.
        super_batch_size: If set, every batch must have exactly this size.
        online_reference: Train the reference online (ClassAct-Online).
        example_loss: Optional `fn(y, y_pred) -> [B]` per-example loss used for
            scoring instead of the compiled loss (ActiveCLIP scores pairs by the
            negative dot product of their embeddings).
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
            `active_keras.reference_losses`). The step then looks each
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
        if selection == "sample" and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.keep_fraction = float(keep_fraction)
        self.temperature = float(temperature)
        self.super_batch_size = super_batch_size
        # B found by `fit()` (its batch_size, or the data's first batch) when
        # super_batch_size is None; pads partial super-batches to this size.
        self._fit_super_batch_size = None
        if super_batch_size is not None:
            self.sub_batch_size(super_batch_size)  # Fails early on b == 0 or b == B.
        needs = set(self.policy.requires)
        if online_reference and reference_losses is not None:
            raise ValueError(
                "reference_losses are losses of a frozen reference; an online reference changes "
                "every step. Use one or the other."
            )
        if ("reference" in needs and reference_losses is None or online_reference) and (
            reference is None
        ):
            raise ValueError(
                f"Policy {self.policy.name!r} needs a reference model: pass reference=."
            )
        if "actor" in needs and actor is None:
            if reference is None:
                raise ValueError(f"Policy {self.policy.name!r} needs an actor: pass actor=.")
            actor = _fresh_copy(reference)
        self.learner = learner
        self.actor = actor
        self.online_reference = bool(online_reference)
        self.example_loss = example_loss
        if self.online_reference:
            self.reference = reference
        else:
            if reference is not None:
                reference.trainable = False
            # Frozen: kept out of Keras tracking so that it is neither in
            # `self.weights` nor in any checkpoint; it lives in its own file.
            object.__setattr__(self, "reference", reference)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.actor_optimizer = None
        self.reference_optimizer = None
        self.score_tracker = keras.metrics.Mean(name="score")
        # Selection strength: the spread of each step's super-batch scores (means over steps).
        self.score_std_tracker = keras.metrics.Mean(name="score_std")
        self.score_min_tracker = keras.metrics.Mean(name="score_min")
        self.score_max_tracker = keras.metrics.Mean(name="score_max")
        self.actor_loss_tracker = keras.metrics.Mean(name="actor_loss")
        self.corrupted_tracker = keras.metrics.Mean(name="selected_corrupted")
        # Ids of the last selected sub-batch, read by `active_keras.replay` (one device
        # only). Hidden from tracking like the reference: not a weight, not checkpointed.
        ids = None
        if super_batch_size is not None:
            ids = tf.Variable(
                tf.zeros([self.sub_batch_size(super_batch_size)], tf.int64),
                trainable=False,
                name="last_selected_ids",
            )
        object.__setattr__(self, "last_selected_ids", ids)
        self.reference_loss_table = None
        if reference_losses is not None:
            self.use_reference_losses(reference_losses)
        # Built models (functional, Sequential with an Input) need no data to build the wrapper.
        if all(m.built for m in [learner, *self._small_models()]):
            self.built = True

    def __dir__(self):
        # Keras saving walks `dir(model)`: hiding the frozen reference keeps it out
        # of `.weights.h5` / `.keras` files (and so out of BackupAndRestore).
        names = super().__dir__()
        if getattr(self, "online_reference", False):
            return names
        return [n for n in names if n != "reference"]

    # ----------------------------------------------------------------- set-up

    def use_reference_losses(self, table):
        """Scores with precomputed reference losses (`table[example_id]`) from now on.

        Args:
            table: float32 vector of the frozen reference's per-example loss,
                indexed by example id (ids absent from the data may hold NaN).
        """
        if "reference" not in self.policy.requires:
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
        self, optimizer="rmsprop", *args, actor_optimizer=None, reference_optimizer=None, **kwargs
    ):
        """Like `keras.Model.compile`, plus optimizers for the small models.

        Args:
            optimizer: The learner's optimizer.
            actor_optimizer: The actor's; defaults to a copy of `optimizer`.
            reference_optimizer: For `online_reference=True`; defaults to a copy
                of `optimizer` with twice its learning rate (METHOD.md).
            *args: Passed on to `keras.Model.compile`.
            **kwargs: Passed on to `keras.Model.compile`.
        """
        super().compile(optimizer, *args, **kwargs)
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
        return super().fit(x, y, batch_size, *args, **kwargs)

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
        return self.learner.losses + self._get_own_losses()

    def call(self, inputs, training=False):
        return self.learner(inputs, training=training)

    # ------------------------------------------------------------- train step

    def per_example_loss(self, y, y_pred):
        """Per-example loss from the compiled loss, unreduced, as float32 `[B]`.

        Uses the loss objects given to `compile()` (and their loss weights),
        calling each one's unreduced `call`; no loss is written by hand. Like
        `Loss.__call__`, inputs are first cast to the loss's dtype (float32),
        so under a mixed precision policy the loss is computed in float32.
        """
        compile_loss = self._compile_loss
        if compile_loss is None:
            raise ValueError("ActiveLearner needs a loss: pass loss= to compile().")
        if not compile_loss.built:
            compile_loss.build(y, y_pred)
        total = None
        for path, loss_fn, loss_weight, _ in compile_loss._flat_losses:
            y_t, y_p = y, y_pred
            for key in path:
                y_t, y_p = y_t[key], y_p[key]
            dtype = getattr(loss_fn, "dtype", None) or "float32"
            y_t, y_p = (
                tree.map_structure(lambda v, d=dtype: keras.ops.convert_to_tensor(v, dtype=d), t)
                for t in (y_t, y_p)
            )
            value = tf.cast(loss_fn.call(y_t, y_p), tf.float32)
            if value.shape.rank > 1:
                value = tf.reduce_mean(value, axis=list(range(1, value.shape.rank)))
            if loss_weight is not None:
                value = value * loss_weight
            total = value if total is None else total + value
        return total

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
            and not _is_tpu_strategy(strategy)  # TPUs compile the whole step.
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
        kwargs = {"temperature": self.temperature, "seed": self._selection_seed()}
        if getattr(self._select, "uses_context", False):
            kwargs["context"] = context
        return self._select(scores, k, **kwargs)

    def _selection_seed(self):
        context = tf.distribute.get_replica_context()
        if (
            self.selection_scope == "local"
            and context is not None
            and context.num_replicas_in_sync > 1
        ):
            return _ReplicaSeed(self.seed_generator, context.replica_id_in_sync_group)
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
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.super_batch_size is not None and size * replicas != self.super_batch_size:
            raise ValueError(
                f"Got a super-batch of {size * replicas} examples"
                + (f" ({size} on each of {replicas} replicas)" if replicas > 1 else "")
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
            scaled = optimizer.scale_loss(scale_loss_for_distribution(loss))
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def _global_winners(self, scores, context, b):
        """Global selection from this replica's scores: the same `[b]` on every replica.

        Returns indices into the all-gathered super-batch (replica-major).
        """
        replica = tf.distribute.get_replica_context()
        all_scores = replica.all_gather(scores, axis=0)
        if getattr(self._select, "uses_context", False):
            context = _all_gather(replica, context)
        else:
            context = None  # Not read: skip its communication.
        return all_scores, self.select(all_scores, b, context)

    def _select_sub_batch(self, x, y, sample_weight, corrupted, size, example_id=None):
        """Scores and selects; returns this replica's `(x, y, sw, corrupted, scores, b)`."""
        replica = tf.distribute.get_replica_context()
        replicas = replica.num_replicas_in_sync if replica is not None else 1
        scores, context = self.score(x, y, example_id)
        self._track_score_spread(scores)
        if self.selection_scope == "local" or replicas == 1:
            b = self.sub_batch_size(size)
            index = self.select(scores, b, context)
            if example_id is not None and self.last_selected_ids is not None and replicas == 1:
                self.last_selected_ids.assign(tf.cast(tf.gather(example_id, index), tf.int64))
                object.__setattr__(self, "_records_ids", True)  # A trace-time fact, for replay.

            def take(t):
                return None if t is None else tf.gather(t, index)

            selected = tf.nest.map_structure(take, (x, y, sample_weight, corrupted))
            return (*selected, tf.gather(scores, index), b)

        b_global = self.sub_batch_size(size * replicas)
        if b_global % replicas:
            raise ValueError(
                f"Global selection splits the b={b_global} selected examples evenly over "
                f"{replicas} replicas; choose keep_fraction and the super-batch size so that "
                f"b is a multiple of {replicas}."
            )
        all_scores, index = self._global_winners(scores, context, b_global)
        # Replica r trains on winners r, r + R, ...: a strided share mixes high
        # and low scores on every replica (it matters for batch statistics).
        rank = replica.replica_id_in_sync_group
        mine = tf.gather(tf.reshape(index, [-1, replicas]), rank, axis=1)
        # All-gather the whole super-batch: `all_gather` is the collective every
        # strategy offers; the winners can come from any replica.
        gathered = _all_gather(replica, (x, y, sample_weight, corrupted))
        selected = tf.nest.map_structure(
            lambda t: None if t is None else tf.gather(t, mine), gathered
        )
        return (*selected, tf.gather(all_scores, mine), b_global // replicas)

    def _update_on_sub_batch(self, x_sel, y_sel, sample_weight, count):
        """Updates the learner (and the actor) on the selected sub-batch; returns `y_pred`.

        `count` is how many selected examples the loss tracker counts.
        """
        # Learner: forward and gradient over the selected sub-batch only.
        with tf.GradientTape() as tape:
            y_pred = self.learner(x_sel, training=True)
            loss = self._compute_loss(
                x=x_sel, y=y_sel, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            self._loss_tracker.update_state(
                unscale_loss_for_distribution(loss), sample_weight=count
            )
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
        object.__setattr__(self, "_marks_corruption", "corrupted" in metadata)
        if corrupted_sel is not None:
            self.corrupted_tracker.update_state(tf.cast(corrupted_sel, tf.float32))
        return _multi_worker_logs(self.compute_metrics(x_sel, y_sel, y_pred, sample_weight=sw_sel))

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
                "the dataset with drop_remainder=True (see active_keras.distribute)."
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
        object.__setattr__(self, "_marks_corruption", "corrupted" in metadata)
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

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy Keras builds the model from a first batch before
        # tracing: it MEAN-reduces that distributed batch across replicas (which
        # fails on bool metadata such as `corrupted`) and reads a third element
        # as sample weights. Build from replica 0's batch, metadata stripped.
        if self._distribute_strategy is not None and iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                break
            first = self.distribute_strategy.experimental_local_results

            def local(v):
                return first(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v

            data_batch, iterator = tree.map_structure(local, batch), None
        if data_batch is not None:
            x, y, sample_weight, _ = unpack_batch(data_batch)
            data_batch = (x, y) if sample_weight is None else (x, y, sample_weight)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def test_step(self, data):
        x, y, sample_weight, _ = unpack_batch(data)
        logs = super().test_step((x, y, sample_weight))
        selection_only = {m.name for m in self._selection_trackers()}
        return _multi_worker_logs({k: v for k, v in logs.items() if k not in selection_only})

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

    def _selection_trackers(self):
        return (
            self.score_tracker,
            self.score_std_tracker,
            self.score_min_tracker,
            self.score_max_tracker,
            self.actor_loss_tracker,
            self.corrupted_tracker,
        )

    def get_metrics_result(self):
        # Report only what this run measures: no actor loss without an actor,
        # no corrupted fraction when the data marks no corruption.
        results = super().get_metrics_result()
        if self.actor is None:
            results.pop("actor_loss", None)
        if not getattr(self, "_marks_corruption", False):
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
        if not getattr(self, "_save_noted", False):
            logging.warning(
                "ActiveLearner.save() saves the learner (model.learner) to %s: load it with "
                "keras.models.load_model. The actor and the reference are not saved with it.",
                filepath,
            )
            object.__setattr__(self, "_save_noted", True)
        if zipped is not None:
            kwargs["zipped"] = zipped
        return self.learner.save(filepath, overwrite=overwrite, **kwargs)

    def get_config(self):
        raise NotImplementedError(
            "The ActiveLearner wrapper has no config: model.save() saves model.learner (a plain "
            "Keras model); use save_weights() to checkpoint training."
        )
