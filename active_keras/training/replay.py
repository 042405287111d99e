"""Replay: record the sub-batches an active run selected, and train on them again.

An active run pays for scoring at every step. Recording which examples it
selected lets any other learner (another size, another seed) train on exactly
that sequence of sub-batches with plain `keras.Model.fit`: no scoring models,
no scoring cost.

- `ReplayRecorder` (added by `train.run`) reads `ActiveLearner.last_selected_ids`
  after every step and appends them, one `[steps, b]` int32 chunk per Keras
  epoch (evaluation interval) and per checkpoint (the loop calls `flush`
  before each, so a checkpoint never runs ahead of the record), to
  `<model_dir>/replay/steps-<first step>.npy`. A resumed run first drops the
  rows past its restored step.
- `load_selected_ids(dir)` returns the `[steps, b]` ids of a run.
- `replay_dataset(data, dir)` gives those sub-batches in order, from the train
  split of an `ImageClassificationData`.
- `ReplayRun(...).run()` (`run.replay_from = 'DIR'` on the command line) trains
  the task's learner on them (a variant of `loop.Loop`: a killed replay
  resumes from its checkpoints) and writes the same `metrics.json` curve.

Example:

```python
ds = replay_dataset(task.data, "runs/classact")  # (x, y, metadata) batches of b
learner.fit(ds.map(lambda x, y, m: (x, y)), epochs=1)
```
"""

import contextlib
import dataclasses
import glob
import os
import re
import warnings

import keras
import numpy as np
import tensorflow as tf

from active_keras import files
from active_keras.analysis import flops
from active_keras.data import pixels
from active_keras.training import callbacks as callbacks_lib
from active_keras.training import loop

FOLDER = "replay"


CHUNK = re.compile(r"steps-(\d{9})\.npy")


def _chunks(folder):
    """`[(first_step, path)]` of a replay folder, by step.

    Only names that are exactly `steps-<9 digits>.npy`: any other file (a
    temporary one of another tool, say) is no chunk.
    """
    out = []
    for path in glob.glob(os.path.join(folder, "steps-*.npy")):
        match = CHUNK.fullmatch(os.path.basename(path))
        if match:
            out.append((int(match.group(1)), path))
    return sorted(out)


def _folder(path):
    """`path` itself, or its `replay/` subfolder when it is a run's model_dir."""
    sub = os.path.join(path, FOLDER)
    return sub if os.path.isdir(sub) else path


def _save(path, array):
    # Atomic, through a temporary name outside the `steps-*.npy` pattern: a killed run
    # leaves neither half a chunk nor a file that `_chunks` would read as one.
    with files.atomic_file(path, "wb", site="replay_chunk") as f:
        np.save(f, array)


class ReplayRecorder(keras.callbacks.Callback):
    """Appends the ids selected at each step to `folder` (one device only).

    Args:
        folder: Where the `steps-<first step>.npy` chunks go.

    Example:

    ```python
    model.fit(ds, epochs=4, steps_per_epoch=250, callbacks=[ReplayRecorder("run/replay")])
    ids = load_selected_ids("run/replay")  # [1000, b]
    ```
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self._rows, self._first = [], None
        self._checked = self._active = False

    def on_train_begin(self, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        start = callbacks_lib.step_of(self.model)
        self._rows, self._first, self._checked = [], start, False
        # Resumed from a checkpoint at `start`: rows at or past it are from the lost part.
        for first, path in _chunks(self.folder):
            if first >= start:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            else:
                ids = np.load(path)
                if first + len(ids) > start:
                    _save(path, ids[: start - first])

    def on_train_batch_end(self, batch, logs=None):
        self._take()

    def _take(self):
        """Appends the current step's ids, once (the checkpointer may ask first: `flush`)."""
        if self._first + len(self._rows) >= callbacks_lib.step_of(self.model):
            return  # This step's row is taken already.
        if not self._checked:
            self._checked = True
            self._active = bool(getattr(self.model, "records_selected_ids", False))
            if not self._active:  # A run that cannot be replayed still trains.
                warnings.warn(
                    "ReplayRecorder records nothing: it needs an ActiveLearner with "
                    "super_batch_size set, on one device, and batches whose metadata has "
                    "'example_id'.",
                    stacklevel=2,
                )
        if self._active:
            self._rows.append(self.model.last_selected_ids.numpy())

    def flush(self):
        """Writes the rows so far as one chunk, the current step's included.

        The checkpointer calls it before each save (`Checkpointer.before_save`):
        a run resumed from that checkpoint then finds every row up to it.
        """
        self._take()
        if self._rows:
            ids = np.stack(self._rows)
            if ids.min() >= np.iinfo(np.int32).min and ids.max() <= np.iinfo(np.int32).max:
                ids = ids.astype(np.int32)  # Half the bytes; any real split's ids fit.
            _save(os.path.join(self.folder, f"steps-{self._first:09d}.npy"), ids)
            self._first += len(self._rows)
            self._rows = []

    def before_checkpoint(self):
        self.flush()

    def on_epoch_end(self, epoch, logs=None):
        self.flush()

    def on_train_end(self, logs=None):
        self.flush()


def load_selected_ids(path):
    """The `[steps, b]` int64 ids recorded in a run dir (or its `replay/` folder).

    Raises:
        FileNotFoundError: Nothing was recorded there.
        ValueError: The chunks leave a gap or overlap (a damaged record).
    """
    folder = _folder(path)
    chunks = _chunks(folder)
    if not chunks:
        raise FileNotFoundError(f"No recorded selections (steps-*.npy) in {folder!r}.")
    parts, step = [], 0
    for first, p in chunks:
        if first != step:
            raise ValueError(f"Replay chunk {p} starts at step {first}; expected step {step}.")
        ids = np.load(p)
        parts.append(ids.astype(np.int64))
        step += len(ids)
    return np.concatenate(parts)


def replay_dataset(data, ids_path, batch_size=None, start_step=0):
    """The recorded sub-batches, in order, as `(x, y, metadata)` batches.

    Args:
        data: The `ImageClassificationData` of the recorded run (same name,
            seed, held-out size and label noise: ids index its train split).
        ids_path: The run's model_dir, or its `replay/` folder.
        batch_size: Defaults to the recorded `b`; another size re-batches the
            same sequence of examples (the last partial batch is dropped).
        start_step: Skip this many recorded sub-batches.
    """
    ids = load_selected_ids(ids_path)[start_step:]
    if not hasattr(data, "splits"):
        raise ValueError(
            f"Replay reads the train split arrays of an ImageClassificationData; got "
            f"{type(data).__name__}."
        )
    split = data.splits["train"]
    position = {int(i): p for p, i in enumerate(split.ids)}
    missing = [int(i) for i in np.unique(ids) if int(i) not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} recorded ids (e.g. {missing[:3]}) are not in the train split of "
            f"{data.name!r}: replay with the data set-up of the recorded run."
        )
    index = np.vectorize(position.__getitem__, otypes=[np.int64])(ids)
    b = index.shape[1]
    images, labels = tf.constant(split.images), tf.constant(split.labels)
    corrupted, example_ids = tf.constant(split.corrupted), tf.constant(split.ids)

    def gather(i):
        x = pixels.to_unit(tf.gather(images, i))
        meta = {"corrupted": tf.gather(corrupted, i), "example_id": tf.gather(example_ids, i)}
        return x, tf.gather(labels, i), meta

    ds = tf.data.Dataset.from_tensor_slices(index)
    if batch_size and batch_size != b:
        ds = ds.unbatch().batch(batch_size, drop_remainder=True)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


class _Plain(keras.Model):
    """The learner under plain `fit`, with the `.learner` that `CurveLogger` evaluates."""

    def __init__(self, learner, **kwargs):
        super().__init__(**kwargs)
        self.learner = learner

    def call(self, inputs, training=False):
        return self.learner(inputs, training=training)


class ReplayRun(loop.Loop):
    """Trains `task`'s learner with plain `fit` on the sub-batches recorded in `replay_from`.

    Writes `metrics.json` (the same curve and FLOP ledger as `train.run`, with
    no scoring cost) and `learner.keras` into `model_dir`; checkpoints into
    `model_dir/checkpoints`, from which a rerun resumes (`active_keras.training.loop`).

    Args:
        model_dir: Output folder.
        task: The task of the recorded run (its data set-up must match).
        replay_from: The recorded run's model_dir (or its `replay/` folder).
        optimizer_fn: `fn(num_steps=) -> optimizer`.
        schedule: A `loop.Schedule`; its `num_steps` may be 0 for every recorded
            step, rounded down to `eval_every`.
        jit_compile: XLA-compile the train step.
        seed: Seed of the learner's initial weights.
    """

    def __init__(self, model_dir, task, replay_from, optimizer_fn, schedule, *, jit_compile, seed):
        recorded = len(load_selected_ids(replay_from))
        num_steps = schedule.num_steps or recorded - recorded % schedule.eval_every
        if not 0 < num_steps <= recorded:
            raise ValueError(
                f"Replay of {num_steps} steps: {recorded} are recorded in {replay_from!r}, and "
                f"num_steps must be a positive multiple of eval_every={schedule.eval_every}."
            )
        schedule = dataclasses.replace(schedule, num_steps=num_steps)
        keras.utils.set_random_seed(seed)
        model = _Plain(task.build_learner(), name="replay")
        model.compile(
            optimizer=optimizer_fn(num_steps=num_steps),
            loss=task.loss(),
            metrics=task.metrics(),
            jit_compile=jit_compile,
        )
        self.task, self.replay_from, self.model_dir = task, replay_from, model_dir
        b = int(self.dataset(0).element_spec[0].shape[0])
        facts = {"policy": "replay", "replay_from": replay_from, "sub_batch_size": b, "seed": seed}
        super().__init__(model, os.path.join(model_dir, "checkpoints"), schedule, facts)
        learner = model.learner
        self.ledger = flops.FlopLedger(
            flops={"learner": flops.forward_flops(learner, tuple(learner.input_shape[1:]))},
            super_batch_size=b,
            sub_batch_size=b,
        )

    def dataset(self, start_step):
        ds = replay_dataset(self.task.data, self.replay_from, start_step=start_step)
        # Bounded by steps: `repeat` keeps Keras from counting the dataset.
        return ds.map(lambda x, y, m: (x, y)).repeat()

    def curve_logger(self, curve):
        return callbacks_lib.CurveLogger(
            self.task,
            self.ledger,
            self.eval_every,
            os.path.join(self.model_dir, "metrics.json"),
            curve=curve,
            extra=self.facts,
            total_steps=self.num_steps,
            print_progress=self.verbose > 0,
        )

    def save(self):
        files.save_model(self.model.learner, os.path.join(self.model_dir, "learner.keras"))
