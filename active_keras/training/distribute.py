"""Scale-out helpers: `tf.distribute` strategies by name and per-replica super-batch input.

`make_strategy` builds one of the four strategies `ActiveLearner` is tested
with; `distribute_super_batches` builds a distributed dataset whose per-replica
batches together form one *global* super-batch, each input pipeline (one per
worker) reading its own shard of the examples.

Where things run under a strategy (see also `ActiveLearner`'s docstring):

- Keras runs `train_step` once per replica inside `strategy.run`. Keras turns
  XLA off for the whole step under `tf.distribute` (keras#19005), so the step
  itself runs as a plain TF graph on each replica's device.
- `ActiveLearner(jit_scoring=True)` compiles the per-replica *scoring* (the
  forward passes of the scoring models and their per-example losses) with
  `tf.function(jit_compile=True)` inside each replica; selection, the all-gather
  of global selection and the learner/actor updates stay outside XLA.
- Under `TPUStrategy` the whole step is compiled by XLA anyway.

Example:

```python
from active_keras.training import distribute
from active_keras.data.classification import ImageClassificationData

strategy = distribute.make_strategy("mirrored")  # All local GPUs.
data = ImageClassificationData("fashion_mnist")
train = distribute.classification_super_batches(strategy, data, global_super_batch_size=256)
with strategy.scope():
    model = build_active_learner()  # ActiveLearner(..., selection_scope="global"); compile()
model.fit(train, steps_per_epoch=1000)
```
"""

import json
import os

import gin
import tensorflow as tf
from absl import logging

from active_keras.data import pixels
from active_keras.training import peers, replicas

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")
# Long enough for real clusters whose workers start minutes apart.
DEFAULT_PEER_TIMEOUT = 600
# The strategies made in this process, by their arguments (see `make_strategy`).
_MADE = {}


@gin.configurable
def make_strategy(name="one_device", tpu_address=None, devices=None, peer_timeout=None):
    """Builds a `tf.distribute.Strategy` by name.

    Args:
        name: One of `STRATEGIES`:
            - `"one_device"`: `OneDeviceStrategy` on `devices[0]`, else the first
              GPU, else the CPU.
            - `"mirrored"`: `MirroredStrategy` (synchronous data parallelism on
              one machine) over `devices`, else all GPUs; on a machine without
              GPUs, over all logical CPU devices.
            - `"multi_worker_mirrored"`: `MultiWorkerMirroredStrategy` (the
              subclass `replicas.MultiWorkerMirroredStrategy`, under which
              Keras' `fit()` can build a model, keras#20585); the cluster comes
              from the `TF_CONFIG` environment variable, which every worker
              sets with its own `task.index`.
            - `"tpu"`: `TPUStrategy` after connecting to and initialising the
              TPU system at `tpu_address`.
        tpu_address: For `"tpu"`: a TPU name or `grpc://` address; `"local"` on a
            TPU VM; `None` reads `TPU_NAME` / Colab's `COLAB_TPU_ADDR`.
        devices: Optional device names for `"one_device"` / `"mirrored"`.
        peer_timeout: For `"multi_worker_mirrored"`: seconds a worker waits for
            its peers, at start-up (every worker must join the cluster within
            it) and in every collective (`CommunicationOptions.timeout_seconds`).
            A worker whose peer has gone then ends with an error naming the
            worker that is missing (`active_keras.training.peers`), instead of waiting
            without end.
            Default `DEFAULT_PEER_TIMEOUT` (600 s).

    Returns:
        The strategy. Build and compile models inside `strategy.scope()`. One
        strategy per process and set of arguments: a second call returns the
        first one's strategy. (Each new MirroredStrategy /
        MultiWorkerMirroredStrategy numbers its collectives from the same keys,
        which the process-wide collective executor remembers: a second one in
        the same process, as in a notebook or a `--compare_with` run, would fail
        with "Collective instance ... expected type ...".)

    Raises:
        ValueError: For an unknown `name`.

    Example:

    ```python
    strategy = make_strategy("tpu", tpu_address="local")
    print(strategy.num_replicas_in_sync)  # 8 on a v3-8
    ```
    """
    key = (name, tpu_address, tuple(devices or ()), peer_timeout)
    if key not in _MADE:
        _MADE[key] = _new_strategy(name, tpu_address, devices, peer_timeout)
    return _MADE[key]


def _new_strategy(name, tpu_address, devices, peer_timeout):
    if name == "one_device":
        if devices:
            device = devices[0]
        else:
            device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        if devices is None and not tf.config.list_logical_devices("GPU"):
            # MirroredStrategy would use only CPU:0; take every logical CPU device.
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker_mirrored":
        if "TF_CONFIG" not in os.environ:
            logging.warning("TF_CONFIG is not set: MultiWorkerMirroredStrategy runs one worker.")
        else:
            config = json.loads(os.environ["TF_CONFIG"])
            logging.info("TF_CONFIG task %s, cluster %s", config.get("task"), config.get("cluster"))
        timeout = DEFAULT_PEER_TIMEOUT if peer_timeout is None else peer_timeout
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        # Joining the cluster blocks inside TensorFlow until every worker has registered, and
        # no public setting bounds that wait: a watchdog ends the process if it takes too long.
        with peers.start_deadline(timeout):
            return replicas.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "tpu":
        if tpu_address is None:
            tpu_address = os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
            if tpu_address and "://" not in tpu_address and ":" in tpu_address:
                tpu_address = "grpc://" + tpu_address  # Colab gives host:port.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose from {STRATEGIES}.")


def distribute_super_batches(
    strategy,
    examples_fn,
    global_super_batch_size,
    *,
    shuffle_buffer=None,
    seed=0,
    map_fn=None,
    repeat=True,
):
    """Per-replica super-batches from `strategy.distribute_datasets_from_function`.

    Each input pipeline (one per worker) calls `examples_fn`, keeps its own
    shard of the examples (`shard(num_input_pipelines, input_pipeline_id)`),
    shuffles, repeats and batches them at the per-replica size
    `global_super_batch_size / num_replicas` with `drop_remainder=True` (selection
    needs static shapes). One step's per-replica batches together form a global
    super-batch of `global_super_batch_size` examples.

    Args:
        strategy: A `tf.distribute.Strategy`.
        examples_fn: `fn() -> tf.data.Dataset` of *unbatched* examples, for
            example `(image, label)` or `(image, label, metadata_dict)`.
        global_super_batch_size: `B` over all replicas; must divide evenly.
        shuffle_buffer: Shuffle buffer size (`None`: no shuffle, `0`: the whole
            shard, as far as its cardinality is known).
        seed: Shuffle seed (each pipeline adds its id, as its shard differs).
        map_fn: Optional function applied to every *batch* (for example
            `uint8 -> float32` conversion), after batching.
        repeat: Repeat forever (pass `steps_per_epoch` to `fit()`).

    Returns:
        A `tf.distribute.DistributedDataset` to pass to `model.fit()`. Bool
        tensors (label-noise marks) arrive as int32: Keras cannot reduce bool
        ones across replicas (see `replicas.bools_as_ints`).

    Example:

    ```python
    def examples():
        return tf.data.Dataset.from_tensor_slices((images, labels))

    train = distribute_super_batches(strategy, examples, 256, shuffle_buffer=10_000)
    model.fit(train, steps_per_epoch=500)
    ```
    """
    num_replicas = strategy.num_replicas_in_sync
    if global_super_batch_size % num_replicas:
        raise ValueError(
            f"global_super_batch_size={global_super_batch_size} does not split evenly over "
            f"{num_replicas} replicas."
        )

    def dataset_fn(input_context):
        per_replica = input_context.get_per_replica_batch_size(global_super_batch_size)
        ds = examples_fn()
        if input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if shuffle_buffer is not None:
            buffer = shuffle_buffer or int(ds.cardinality())
            if buffer <= 0:
                raise ValueError("shuffle_buffer=0 needs a dataset of known size.")
            ds = ds.shuffle(
                buffer, seed=seed + input_context.input_pipeline_id, reshuffle_each_iteration=True
            )
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(per_replica, drop_remainder=True)
        if map_fn is not None:
            ds = ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return replicas.bools_as_ints(ds).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def classification_super_batches(
    strategy, data, global_super_batch_size, *, split="train", seed=0, shuffle=True
):
    """`distribute_super_batches` over a split of an `ImageClassificationData`.

    Batches are `(image float32 in [0, 1], label, {"corrupted", "example_id"})`
    as from `ImageClassificationData.dataset` (`corrupted` as int32), each
    worker reading its own shard.

    Args:
        strategy: A `tf.distribute.Strategy`.
        data: An `active_keras.data.classification.ImageClassificationData`.
        global_super_batch_size: `B` over all replicas.
        split: "train", "heldout" or "test".
        seed: Shuffle seed.
        shuffle: Shuffle the whole shard every pass.

    Example:

    ```python
    train = classification_super_batches(strategy, ImageClassificationData("digits"), 64)
    ```
    """
    arrays = data.splits[split]

    def examples():
        return tf.data.Dataset.from_tensor_slices(
            (
                arrays.images,
                arrays.labels,
                {"corrupted": arrays.corrupted, "example_id": arrays.ids},
            )
        )

    return distribute_super_batches(
        strategy,
        examples,
        global_super_batch_size,
        shuffle_buffer=0 if shuffle else None,
        seed=seed,
        map_fn=lambda x, y, m: (pixels.to_unit(x), y, m),
    )


def shard_global_batches(strategy, global_dataset_fn, global_super_batch_size):
    """Distributes a stream of global super-batches: each input pipeline keeps its rows.

    `global_dataset_fn()` yields the same global super-batches (size `B`) that a
    one-device run would see, in a deterministic order (the training data's
    order is a pure function of seed and step, which is also what makes runs
    resumable). Input pipeline `i` of `n` (one per worker) keeps rows
    `[i B/n, (i+1) B/n)` of every global batch and splits them into per-replica
    batches, so the replicas of one step together hold exactly that step's
    global super-batch: distributed and one-device runs select from the same
    examples, and a resumed run continues where it stopped.

    Built on `strategy.distribute_datasets_from_function`. Each worker still
    decodes the whole global batch before keeping its rows, which is cheap for
    in-memory arrays; for data that is expensive to read use
    `distribute_super_batches`, which shards the examples instead.

    Args:
        strategy: A `tf.distribute.Strategy`.
        global_dataset_fn: `fn() -> tf.data.Dataset` of global super-batches of
            static size `global_super_batch_size`.
        global_super_batch_size: `B`.

    Returns:
        A distributed dataset for `model.fit()` (bool tensors as int32).
    """
    num_replicas = strategy.num_replicas_in_sync
    if global_super_batch_size % num_replicas:
        raise ValueError(
            f"The super-batch of {global_super_batch_size} does not split evenly over "
            f"{num_replicas} replicas."
        )

    def dataset_fn(input_context):
        per_pipeline = global_super_batch_size // input_context.num_input_pipelines
        start = input_context.input_pipeline_id * per_pipeline
        per_replica = input_context.get_per_replica_batch_size(global_super_batch_size)

        def rows(*batch):
            return tf.nest.map_structure(lambda t: t[start : start + per_pipeline], batch)

        ds = global_dataset_fn().map(rows).unbatch()
        ds = ds.batch(per_replica, drop_remainder=True)
        return replicas.bools_as_ints(ds).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)
