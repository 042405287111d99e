"""The training loop: one place that streams the data, fits, checkpoints, resumes and saves.

Every training of the package runs through `Loop.run()`: the active run
(`train.ActiveRun`), the reference's pre-training (`train.ReferenceTraining`)
and a replay (`replay.ReplayRun`). In order, `run()`

1. decides where to start: the latest checkpoint of `directory` if there is
   one (its step and curve), else step 0 (`checkpointing.Checkpointer.restore`);
2. fits `model` segment by segment (`segments`: Keras epochs are evaluation
   intervals; a run resumed mid-interval first finishes it), on the data from
   the start step on (`dataset(step)`: the data position is the step);
3. runs the callbacks in a fixed order: `StopOnNaN` first (a non-finite step is
   never checkpointed), the curve logger, the checkpointer (after the logger, so
   that a checkpoint holds its step's evaluation), then the variant's others;
4. saves the product (`save()`).

Every callback reads the step from one source, the optimizer's update count
(`callbacks.step_of`), which the checkpoint restores with the optimizer.

A variant overrides hooks, not the loop (dopamine's `TrainRunner` shape):
`dataset` (required), `fit_data`, `state`, `started`, `curve_logger`,
`more_callbacks` and `save`.

Example:

```python
class Pretraining(Loop):
    def dataset(self, start_step):
        return task.dataset("heldout", 128, shuffle=True, repeat=True, start_batch=start_step)

Pretraining(model, "runs/ref.checkpoints", Schedule(1000, 1000, checkpoint_every=250)).run()
```
"""

import collections
import dataclasses

from active_keras.training import callbacks as callbacks_lib
from active_keras.training import checkpointing

Segment = collections.namedtuple(
    "Segment", ["start_step", "initial_epoch", "epochs", "steps_per_epoch"]
)


def segments(start_step, num_steps, eval_every):
    """The `fit()` calls that take a run from `start_step` to `num_steps`.

    Keras epochs are evaluation intervals of `eval_every` steps. A run resumed
    in the middle of one first finishes it with a shorter one-epoch `fit()`;
    epoch numbers stay those of an uninterrupted run.

    Returns:
        A list of `Segment`s (empty when the run is complete).
    """
    out = []
    step = start_step
    if step < num_steps and step % eval_every:
        epoch = step // eval_every
        out.append(Segment(step, epoch, epoch + 1, (epoch + 1) * eval_every - step))
        step = (epoch + 1) * eval_every
    if step < num_steps:
        out.append(Segment(step, step // eval_every, num_steps // eval_every, eval_every))
    return out


def train_dataset(task, super_batch_size, seed, start_step):
    """The training super-batches of `task` from step `start_step` on.

    Through the task's `start_batch=` (`tasks.base.Task.dataset`): the batches
    are exactly those an uninterrupted run would see at those steps (at no
    cost for classification data; ClipTask reads the seeded stream up to there).
    """
    return task.dataset(
        "train", super_batch_size, shuffle=True, repeat=True, seed=seed, start_batch=start_step
    )


def check_steps(num_steps, eval_every):
    """Raises ValueError unless `eval_every` divides `num_steps`."""
    if num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}.")


def fit_verbosity(verbose):
    """Keras's progress bar only for `verbose = 1`; else the evaluation line is the progress."""
    return 1 if verbose == 1 else 0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a run trains and how often it evaluates, checkpoints and prints.

    Attributes:
        num_steps: The run's length (optimizer updates).
        eval_every: Steps per Keras epoch (evaluation interval); divides `num_steps`.
        checkpoint_every: Steps between checkpoints (None: `eval_every`); one
            is also taken at the end.
        verbose: 0 silent, 1 Keras's progress bar too, 2 the curve logger's lines.
    """

    num_steps: int
    eval_every: int
    checkpoint_every: int | None = None
    verbose: int = 2

    def __post_init__(self):
        check_steps(self.num_steps, self.eval_every)


class Loop:
    """Fits a compiled model from its latest checkpoint to `num_steps`, then saves it.

    Args:
        model: The compiled, built model.
        directory: Its checkpoint folder (resumed from when it holds one).
        schedule: A `Schedule`.
        facts: Run facts written beside the checkpoints; resuming with other
            facts is refused.

    Attributes:
        logs: The fit logs of the last epoch trained in this process (`{}` if
            none was).
    """

    def __init__(self, model, directory, schedule, facts=None):
        self.model = model
        self.directory = directory
        self.num_steps = schedule.num_steps
        self.eval_every = schedule.eval_every
        self.checkpoint_every = schedule.checkpoint_every or schedule.eval_every
        self.verbose = schedule.verbose
        self.facts = dict(facts or {})
        self.logs = {}

    # ------------------------------------------------------------------ hooks

    def dataset(self, start_step):
        """The training batches (a `tf.data.Dataset`) from step `start_step` on."""
        raise NotImplementedError

    def fit_data(self, start_step):
        """What `fit()` trains on from `start_step` (default: `dataset(start_step)`)."""
        return self.dataset(start_step)

    def state(self):
        """The checkpointed state (default: `checkpointing.plain_state(model)`).

        Called once the compiled metrics are built.
        """
        return checkpointing.plain_state(self.model)

    def started(self, start_step):
        """Called once the start is decided, before training (default: nothing)."""

    def curve_logger(self, curve):
        """A `callbacks.CurveLogger` continuing `curve`, or None (default) for no curve."""
        del curve

    def more_callbacks(self):
        """Callbacks run after the checkpointer (default: none).

        One with a `before_checkpoint()` method has it called before each
        checkpoint is saved, to write what it recorded up to that step.
        """
        return []

    def save(self):
        """Saves the product once the run is complete (default: nothing)."""

    # ------------------------------------------------------------------- loop

    def run(self):
        """Restores, trains the remaining segments, saves; returns the curve (or `[]`)."""
        checkpointer = checkpointing.Checkpointer(
            self.directory,
            self.model,
            every=self.checkpoint_every,
            total_steps=self.num_steps,
            facts=self.facts,
            element_spec=self.dataset(0).element_spec,
            state_fn=self.state,
        )
        start, curve = checkpointer.restore()  # (0, []) unless resuming.
        self.started(start)
        logger = self.curve_logger(curve)
        callbacks = [callbacks_lib.StopOnNaN()]  # First: a NaN step is never checkpointed.
        if logger is not None:
            checkpointer.track_curve(lambda: logger.curve)
            callbacks.append(logger)
        callbacks.append(checkpointer)  # After the logger: a checkpoint holds its evaluation.
        for callback in self.more_callbacks():
            callbacks.append(callback)
            if hasattr(callback, "before_checkpoint"):  # Its records must reach the checkpoint.
                checkpointer.before_save.append(callback.before_checkpoint)
        todo = segments(start, self.num_steps, self.eval_every)
        for segment in todo:
            history = self.model.fit(
                self.fit_data(segment.start_step),
                initial_epoch=segment.initial_epoch,
                epochs=segment.epochs,
                steps_per_epoch=segment.steps_per_epoch,
                shuffle=False,  # The dataset is shuffled already.
                verbose=fit_verbosity(self.verbose),
                callbacks=callbacks,
            )
            self.logs = {k: v[-1] for k, v in history.history.items()}
        if not todo and logger is not None:
            logger.write()  # Finished before: rewrite the outputs from the last checkpoint.
        self.save()
        return [] if logger is None else logger.curve
