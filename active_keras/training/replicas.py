"""The `tf.distribute` plumbing of `ActiveLearner`'s train step.

`ActiveLearner.train_step` runs once per replica. What it needs from the
strategy, and the workarounds for what Keras and TensorFlow do under one, live
here behind a small interface, so that the step itself reads as
score -> select -> update:

- `in_sync()`: `(replica context, number of replicas, this replica's id)`.
- `scale_loss` / `unscale_loss`: a replica's loss divided by (multiplied by)
  the number of replicas, as gradients are summed over replicas.
- `ReplicaSeed`: per-replica sampling noise for local selection.
- `all_gather`: a structure of tensors gathered along the batch axis.
- `select_globally` / `share_of_winners`: global selection, the same on
  every replica, and each replica's share of the winners.
- `step_logs`: step outputs in the shape Keras' multi-worker reduction needs.
- `bools_as_ints`: bool tensors of a dataset as int32, which Keras can reduce
  when it builds a model from a first distributed batch.
- `is_tpu_strategy`.
- `MultiWorkerMirroredStrategy`: the strategy whose `reduce` takes the nested
  first batch that Keras reduces before it builds a model (keras#20585).

Public `tf.distribute` and Keras API only.
"""

import keras
import tensorflow as tf


def in_sync():
    """`(context, replicas, replica_id)` of the calling replica.

    `context` is `None` in a cross-replica context; `replicas` is then the
    strategy's number of replicas and `replica_id` 0.
    """
    context = tf.distribute.get_replica_context()
    if context is None:
        return None, tf.distribute.get_strategy().num_replicas_in_sync, 0
    return context, context.num_replicas_in_sync, context.replica_id_in_sync_group


def num_replicas():
    """Replicas of the current strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss(loss):
    """A replica's loss divided by the number of replicas: their gradients are summed."""
    replicas = num_replicas()
    return loss * tf.cast(1.0 / replicas, loss.dtype) if replicas > 1 else loss


def unscale_loss(loss):
    """Inverse of `scale_loss` (what Keras' `compute_loss` returns, per example again)."""
    replicas = num_replicas()
    return loss * tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def is_tpu_strategy(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


class ReplicaSeed(keras.random.SeedGenerator):
    """Draws seeds from `generator`, offset by the replica id.

    Under local selection every replica would otherwise read the same
    (mirrored) generator state and draw identical sampling noise. No state of
    its own: `__init__` deliberately skips `SeedGenerator`'s variable.
    """

    def __init__(self, generator, replica_id):  # pylint: disable=super-init-not-called
        self.generator = generator
        self.replica_id = replica_id

    def next(self, ordered=True):
        seed = self.generator.next(ordered)
        offset = tf.stack([tf.cast(self.replica_id, seed.dtype), tf.zeros((), seed.dtype)])
        return seed + offset


def _multi_worker(strategy):
    """Whether `strategy` spans several workers (Keras then reduces step logs along axis 0)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return len(spec.get("chief", [])) + len(spec.get("worker", [])) > 1


def barrier(strategy):
    """Returns once every worker of a multi-worker `strategy` has called it; else at once.

    `strategy` may be None (no tf.distribute).

    An all-reduce of one scalar. A multi-worker run ends with it so that no
    worker exits while the chief still writes its outputs: the chief's
    collective executor would see a peer gone and log an abort ("tasks are
    unhealthy") at the end of a run that succeeded.
    """
    if _multi_worker(strategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def step_logs(logs):
    """Step logs as `[1]` tensors in multi-worker mode (keras 3, tensorflow#72388).

    In multi-worker mode Keras reduces step outputs with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on the scalars every
    `train_step` returns ("Invalid reduction dimension 0 for input with 0
    dimensions"). The values are synchronised metric results; a `[1]` shape
    makes that reduce a plain mean, back to a scalar.
    """
    if _multi_worker(tf.distribute.get_strategy()):
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)
    return logs


def all_gather(context, structure):
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


def has_bools(element_spec):
    """Whether a (possibly distributed) dataset's `element_spec` holds bool tensors."""
    flat = tf.nest.flatten(element_spec, expand_composites=True)
    return any(getattr(s, "dtype", None) == tf.bool for s in flat)


def bools_as_ints(dataset):
    """`dataset` with its bool tensors (label-noise marks) as int32.

    Under a strategy with several replicas Keras builds the model from a first
    batch that it MEAN-reduces across replicas, which TensorFlow cannot do for
    bool tensors (`AddN` has no bool kernel). `ActiveLearner` reads int32 marks
    as it reads bool ones.
    """
    if not has_bools(dataset.element_spec):
        return dataset

    def cast(*batch):
        batch = batch[0] if len(batch) == 1 else batch
        return tf.nest.map_structure(
            lambda t: tf.cast(t, tf.int32) if t.dtype == tf.bool else t, batch
        )

    return dataset.map(cast, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def select_globally(context, select, scores, score_context):
    """One selection over the all-gathered scores: the same on every replica.

    Every replica gathers the same scores and draws from the same seed state,
    so every replica makes the same selection.

    Args:
        context: The replica context.
        select: `fn(all_scores, all_score_context) -> [b]` indices into the
            gathered super-batch (replica-major).
        scores: This replica's float32 scores `[B / R]`.
        score_context: What `score()` returned beside the scores, gathered for
            selectors that read it; `None` when the selector does not (its
            communication is then skipped).

    Returns:
        `(all_scores [B], index [b])`.
    """
    all_scores = context.all_gather(scores, axis=0)
    if score_context is not None:
        score_context = all_gather(context, score_context)
    return all_scores, select(all_scores, score_context)


def share_of_winners(context, index, all_scores, batch):
    """This replica's share of a global selection: winners `r, r + R, ...` of replica `r`.

    A strided share mixes high and low scores on every replica (it matters for
    batch statistics). `b` must be a multiple of `R`.

    Args:
        context: The replica context.
        index: `[b]` from `select_globally`.
        all_scores: `[B]` from `select_globally`.
        batch: A structure of this replica's tensors (`None` entries stay).

    Returns:
        `(selected batch, selected scores)`: this replica's `b / R` winners.
    """
    rank = context.replica_id_in_sync_group
    mine = tf.gather(tf.reshape(index, [-1, context.num_replicas_in_sync]), rank, axis=1)
    # All-gather the whole super-batch: `all_gather` is the collective every
    # strategy offers; the winners can come from any replica.
    gathered = all_gather(context, batch)
    selected = tf.nest.map_structure(lambda t: None if t is None else tf.gather(t, mine), gathered)
    return selected, tf.gather(all_scores, mine)


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` also takes nested values.

    Before the first step of `fit()` / `evaluate()`, Keras builds the model from a
    first distributed batch, which it MEAN-reduces with `strategy.reduce` (only
    its shapes and dtypes are used). `MultiWorkerMirroredStrategy` reduces one
    value at a time in multi-worker mode and fails on a nested batch ("Attempt
    to convert a value (PerReplica(...)) ... to a Tensor"), so `fit()` fails for
    every model with several inputs (keras#20585, open). This subclass reduces a
    nested value leaf by leaf, through the public `reduce` each time; a single
    value goes to it unchanged. `make_strategy("multi_worker_mirrored")` builds
    it; it takes the same arguments as its base.

    Example:

    ```python
    strategy = MultiWorkerMirroredStrategy()  # The cluster comes from TF_CONFIG.
    with strategy.scope():
        model = ActiveLearner(learner, reference, super_batch_size=256)
        model.compile(optimizer="adam", loss=..., metrics=["accuracy"])
    model.fit(train, epochs=2, steps_per_epoch=100)
    ```
    """

    def reduce(self, reduce_op, value, axis):
        reduce_one = super().reduce
        if not tf.nest.is_nested(value):
            return reduce_one(reduce_op, value, axis)
        return tf.nest.map_structure(
            lambda v: None if v is None else reduce_one(reduce_op, v, axis), value
        )
