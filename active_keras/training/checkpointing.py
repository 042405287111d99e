"""Checkpoints that resume an interrupted run exactly where its last checkpoint left it.

A checkpoint (`tf.train.Checkpoint`, managed by `tf.train.CheckpointManager`)
holds everything the rest of the run depends on. For an `ActiveLearner`
(`ActiveLearner.checkpointable_state`):

- the learner's and the actor's variables (non-trainable ones and the dropout
  seed states included), and the reference's only when it trains online;
- every optimizer's variables (learner, actor, online reference), iterations
  and loss scale included;
- the sampling `SeedGenerator` state of the `ActiveLearner`;

for a plain `keras.Model` (the reference's pre-training, a replay;
`plain_state`) its variables and its optimizer's; and for both:

- the step counter, which is also the data position: the training data order is
  a pure function of (seed, step) (see `ImageClassificationData.dataset`), so a
  resumed run starts its dataset at that step, without reading what came before;
- the fit metrics of a half-done evaluation interval (restored after Keras
  resets them at the start of the first resumed epoch);
- the metric curve so far (JSON), which also gives the FLOP ledger's position.

The frozen reference is *not* in an active run's checkpoints: it is loaded from
its own file (`run.reference_path`), as `ActiveLearner` keeps it out of Keras
tracking.

Writes are atomic (the manager renames its state file after the data is on
disk), so a run killed while saving resumes from the previous checkpoint.
Under `MultiWorkerMirroredStrategy` every worker saves (the save is a
collective step for the strategy); only the chief writes into the checkpoint
folder, the others into a temporary folder they delete.

The training loop (`active_keras.training.loop.Loop`) creates, restores and calls the
`Checkpointer`; used alone:

```python
ckpt = Checkpointer(os.path.join(model_dir, "checkpoints"), model, every=100, total_steps=1000)
start, curve = ckpt.restore()  # 0 and [] for a fresh run
model.fit(..., callbacks=[..., ckpt])
```
"""

import json
import os
import shutil

import keras
import tensorflow as tf

from active_keras import files
from active_keras.training import callbacks as callbacks_lib

FACTS_FILE = "run_facts.json"


# The command line's exit status for a `CheckpointMismatch`, its own (every other failure exits
# 1): a driver such as tools/benchmark.py restarts such a run from scratch, and only such a run.
EXIT_OTHER_RUN = 3


class CheckpointMismatch(ValueError):
    """The checkpoints in a folder belong to another run (its facts or its variables differ)."""


class _JsonState(tf.train.experimental.PythonState):
    """A JSON value saved in the checkpoint (the curve so far).

    Python state rather than a string variable: under MultiWorkerMirrored a
    variable's initial value is broadcast, and collectives carry no strings.
    """

    def __init__(self, value):
        self.value = value

    def serialize(self):
        return json.dumps(self.value)

    def deserialize(self, string_value):
        self.value = json.loads(string_value)


def _zero_batch(element_spec):
    """A batch of zeros of `element_spec`'s shapes (unknown sizes as 1)."""
    return tf.nest.map_structure(
        lambda s: tf.zeros([d or 1 for d in s.shape], s.dtype), element_spec
    )


def by_position(variables):
    """`{position: variable}`: a model's variable order is fixed by its architecture.

    Keras paths carry automatic names ("adam_1/...") that depend on what else
    the process built before; positions do not.
    """
    return {str(i): v for i, v in enumerate(variables)}


def metric_variables(model):
    """`{"<metric>/<i>": variable}` of `model.metrics` (the fit metrics of a run)."""
    return {f"{m.name}/{i}": v for m in model.metrics for i, v in enumerate(m.variables)}


def build_compiled_metrics(model, batch):
    """Creates the compiled metrics' variables from one batch (Keras does it in the first step).

    So that they exist, and can be restored, before training starts.

    Args:
        model: A compiled, built `keras.Model` (an `ActiveLearner` too).
        batch: A batch as `fit()` takes it: `(x, y, ...)` (values do not matter, shapes do).
    """
    compiled = [m for m in model.metrics if m.name == "compile_metrics"]
    if not compiled or compiled[0].built:
        return
    x, y = batch[0], batch[1]
    with model.distribute_strategy.scope():
        compiled[0].build(y, model(x, training=False))


def plain_state(model):
    """The training state of a compiled plain `keras.Model`, built for `Checkpointer`.

    Its variables, its optimizer's (built here if `fit()` has not yet) and
    its fit metrics.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return {
        "model": by_position(model.variables),
        "optimizer": by_position(model.optimizer.variables),
        "metrics": metric_variables(model),
    }


def _task_info():
    """`(task_type, task_id)` of this worker under a multi-worker strategy, else `(None, None)`."""
    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def _is_chief(task_type, task_id, cluster_has_chief=False):
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not cluster_has_chief


class Checkpointer(keras.callbacks.Callback):
    """Saves a run's whole training state every `every` steps and at its end.

    A checkpoint taken at the last step of an evaluation interval is written in
    `on_epoch_end`, after the curve logger (put this callback after it): it
    then holds that step's evaluated point. Put `StopOnNaN` before it, so that
    a non-finite step is never checkpointed.

    The step (`callbacks.step_of`) is the model's optimizer's update count.

    Args:
        directory: Checkpoint folder (created when first saving).
        model: The compiled, built model (an `ActiveLearner`, or a plain
            `keras.Model` with `state_fn=lambda: plain_state(model)`).
        every: Steps between checkpoints.
        total_steps: The run's last step (always checkpointed).
        max_to_keep: Checkpoints kept on disk.
        facts: Run facts (policy, sizes, seed, ...) written beside the
            checkpoints; resuming with different facts is refused, as the
            checkpoint would silently continue another run.
        element_spec: The training batches' `element_spec`: lets the compiled
            metrics be built (and so checkpointed) before `fit()`.
        state_fn: `fn() -> {name: variable, or {key: variable}}`, what is
            saved, with the fit metrics under "metrics"; called once the
            compiled metrics are built (default: `model.checkpointable_state`).
    """

    def __init__(
        self,
        directory,
        model,
        every,
        total_steps=None,
        max_to_keep=2,
        facts=None,
        element_spec=None,
        state_fn=None,
    ):
        super().__init__()
        if every is None or every <= 0:
            raise ValueError(f"checkpoint_every={every} must be a positive number of steps.")
        self.directory = directory
        self.every = int(every)
        self.total_steps = total_steps
        self.facts = dict(facts or {})
        self.step = 0
        self._curve_fn = list
        self._metrics_path = None
        # Called before each save: records kept beside the checkpoint (the replay rows, the
        # selection log) are written up to its step, so a resumed run finds no hole.
        self.before_save = []
        self._step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._curve_state = _JsonState([])
        self._mid_epoch_var = tf.Variable(False, trainable=False, name="mid_epoch")
        if element_spec is not None:
            # A resumed run restores the compiled metrics before its first step: create them now.
            build_compiled_metrics(model, _zero_batch(element_spec))
        state = (state_fn or model.checkpointable_state)()
        self.checkpoint = tf.train.Checkpoint(
            **state,
            step=self._step_var,
            curve=self._curve_state,
            mid_epoch=self._mid_epoch_var,
        )
        task_type, task_id = _task_info()
        cluster = {}
        if task_type is not None:
            resolver = tf.distribute.get_strategy().cluster_resolver
            cluster = resolver.cluster_spec().as_dict()
        self.is_chief = _is_chief(task_type, task_id, "chief" in cluster)
        write_dir = directory if self.is_chief else os.path.join(directory, f".worker_{task_id}")
        self._write_dir = write_dir
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, write_dir, max_to_keep=max_to_keep, step_counter=self._step_var
        )

    def track_curve(self, curve_fn):
        """Saves `curve_fn()` (the curve logger's points) with each checkpoint."""
        self._curve_fn = curve_fn

    # ------------------------------------------------------------- restore

    def restore(self):
        """Restores the latest checkpoint of `directory`, if any.

        Returns:
            `(step, curve)`: the step to resume from and the curve up to it;
            `(0, [])` when there is no checkpoint.

        Raises:
            CheckpointMismatch: The checkpoint belongs to another run (different
                facts, or variables that do not match this run's models).
        """
        path = tf.train.latest_checkpoint(self.directory)
        if path is None:
            return 0, []
        self._check_facts()
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise CheckpointMismatch(
                f"The checkpoint {path} does not match this run's models ({e}). Resume with the "
                f"configuration that wrote it, or delete {self.directory} to start over."
            ) from e
        self.step = int(self._step_var.numpy())
        curve = self._curve_state.value
        if bool(self._mid_epoch_var.numpy()):
            # Fit metrics of a half-done interval: put back after Keras resets them.
            self._metrics_path = path
        print(f"checkpoint: resumed from {path} at step {self.step}", flush=True)
        return self.step, curve

    def _facts_path(self):
        return os.path.join(self.directory, FACTS_FILE)

    def _check_facts(self):
        if not os.path.exists(self._facts_path()):
            return
        with open(self._facts_path()) as f:
            saved = json.load(f)
        for key in sorted(set(saved) & set(self.facts)):
            if saved[key] != self.facts[key]:
                raise CheckpointMismatch(
                    f"The checkpoints in {self.directory} are of a run with {key}={saved[key]!r}; "
                    f"this run has {key}={self.facts[key]!r}. Use another --model_dir, or delete "
                    f"{self.directory} to start over."
                )

    # ---------------------------------------------------------------- save

    def save(self, mid_epoch=False):
        """Writes a checkpoint of the current step (every worker must call it).

        Args:
            mid_epoch: Whether an evaluation interval is under way; its fit
                metrics are then restored on resume.
        """
        for write in self.before_save:
            write()
        self._step_var.assign(self.step)
        self._mid_epoch_var.assign(mid_epoch)
        self._curve_state.value = self._curve_fn()
        if self.is_chief and not os.path.exists(self._facts_path()):
            os.makedirs(self.directory, exist_ok=True)
            with files.atomic_file(self._facts_path()) as f:
                json.dump(self.facts, f, indent=1)
        files.pause_point("checkpoint")
        self.manager.save(checkpoint_number=self.step)
        if not self.is_chief:
            # Non-chief workers take part in the save but keep nothing.
            shutil.rmtree(self._write_dir, ignore_errors=True)

    # ----------------------------------------------------------- callbacks

    def on_epoch_begin(self, epoch, logs=None):
        if self._metrics_path is not None:
            # Keras has just reset the fit metrics: give back those of the steps
            # of this interval that ran before the checkpoint.
            metrics = tf.train.Checkpoint(metrics=metric_variables(self.model))
            metrics.restore(self._metrics_path).expect_partial()
            self._metrics_path = None

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of this call (several with steps_per_execution).
        previous, self.step = self.step, callbacks_lib.step_of(self.model)
        steps = (self.params or {}).get("steps")
        last_of_epoch = steps is not None and batch + 1 >= steps
        if not last_of_epoch and self.step // self.every > previous // self.every:
            self.save(mid_epoch=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.step % self.every == 0 or self.step == self.total_steps:
            self.save(mid_epoch=False)
