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
"""

import keras
import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from active_keras.selection import policies, selectors

METADATA_KEYS = ("sample_weight", "corrupted", "example_id")


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
        **kwargs,
    ):
        super().__init__(**kwargs)
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
        if super_batch_size is not None:
            self.sub_batch_size(super_batch_size)  # Fails early on b == 0 or b == B.
        needs = set(self.policy.requires)
        if ("reference" in needs or online_reference) and reference is None:
            raise ValueError(
                f"Policy {self.policy.name!r} needs a reference model: pass reference=."
            )
        if "actor" in needs and actor is None:
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
        self.actor_loss_tracker = keras.metrics.Mean(name="actor_loss")
        self.corrupted_tracker = keras.metrics.Mean(name="selected_corrupted")

    # ----------------------------------------------------------------- set-up

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
        if self.actor is not None:
            self.actor_optimizer = keras.optimizers.get(
                actor_optimizer or _copy_optimizer(self.optimizer)
            )
        if self.online_reference:
            self.reference_optimizer = keras.optimizers.get(
                reference_optimizer or _copy_optimizer(self.optimizer, 2.0)
            )
        self._build_optimizers()

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
        calling each one's unreduced `call`; no loss is written by hand.
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
            return tf.cast(self.example_loss(y, y_pred), tf.float32)
        return self.per_example_loss(y, y_pred)

    def score(self, x, y):
        """Scores a super-batch under the policy.

        Returns:
            `(scores, context)`: float32 scores `[B]`, and a dict with the
            per-example `losses` and the model `outputs` over the super-batch
            that scoring computed (selectors such as joint selection read them).
        """
        models = {"learner": self.learner, "actor": self.actor, "reference": self.reference}
        outputs = {
            name: tf.nest.map_structure(tf.stop_gradient, models[name](x, training=False))
            for name in self.policy.requires
        }
        losses = {name: self.example_losses(y, out) for name, out in outputs.items()}
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
        kwargs = {"temperature": self.temperature, "seed": self.seed_generator}
        if getattr(self._select, "uses_context", False):
            kwargs["context"] = context
        return self._select(scores, k, **kwargs)

    def _check_batch(self, x, y):
        """Trace-time checks that give clear errors for malformed batches."""
        first = tf.nest.flatten(x)[0]
        size = first.shape[0]
        if size is None:
            raise ValueError(
                "The super-batch size is unknown (None). Selection needs a static "
                "size: batch the dataset with drop_remainder=True."
            )
        if self.super_batch_size is not None and size != self.super_batch_size:
            raise ValueError(
                f"Got a super-batch of {size} examples; this ActiveLearner was "
                f"configured with super_batch_size={self.super_batch_size}."
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
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def train_step(self, data):
        x, y, sample_weight, metadata = unpack_batch(data)
        super_batch = self._check_batch(x, y)
        b = self.sub_batch_size(super_batch)

        scores, context = self.score(x, y)
        index = self.select(scores, b, context)

        def take(t):
            return None if t is None else tf.gather(t, index)

        x_sel, y_sel = tf.nest.map_structure(take, x), tf.nest.map_structure(take, y)
        sw_sel = tf.nest.map_structure(take, sample_weight)

        # Learner: forward and gradient over the selected sub-batch only.
        with tf.GradientTape() as tape:
            y_pred = self.learner(x_sel, training=True)
            loss = self._compute_loss(
                x=x_sel, y=y_sel, y_pred=y_pred, sample_weight=sw_sel, training=True
            )
            self._loss_tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=b)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.learner.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)

        if self.actor is not None:
            actor_loss = self._train_small(self.actor, self.actor_optimizer, x_sel, y_sel, sw_sel)
            self.actor_loss_tracker.update_state(actor_loss)
        if self.online_reference:
            self._train_small(self.reference, self.reference_optimizer, x, y, sample_weight)

        self.score_tracker.update_state(tf.reduce_mean(tf.gather(scores, index)))
        # A trace-time fact: whether this data marks corrupted labels at all.
        object.__setattr__(self, "_marks_corruption", "corrupted" in metadata)
        if "corrupted" in metadata:
            self.corrupted_tracker.update_state(tf.cast(take(metadata["corrupted"]), tf.float32))
        return self.compute_metrics(x_sel, y_sel, y_pred, sample_weight=sw_sel)

    def test_step(self, data):
        x, y, sample_weight, _ = unpack_batch(data)
        logs = super().test_step((x, y, sample_weight))
        selection_only = {m.name for m in self._selection_trackers()}
        return {k: v for k, v in logs.items() if k not in selection_only}

    def _selection_trackers(self):
        return (self.score_tracker, self.actor_loss_tracker, self.corrupted_tracker)

    def get_metrics_result(self):
        # Report only what this run measures: no actor loss without an actor,
        # no corrupted fraction when the data marks no corruption.
        results = super().get_metrics_result()
        if self.actor is None:
            results.pop("actor_loss", None)
        if not getattr(self, "_marks_corruption", False):
            results.pop("selected_corrupted", None)
        return results

    def get_config(self):
        raise NotImplementedError(
            "Save `model.learner` (a plain Keras model) rather than the ActiveLearner wrapper."
        )
