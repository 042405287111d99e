"""Keras callbacks of a run: the evaluated learning curve, and stopping on NaN.

`CurveLogger` also prints the run's progress, one line per evaluation (wrapped here):

    step 1500/3000: test_accuracy 0.8112, train loss 0.5480, 3.21 TFLOPs,
    0:02:10 elapsed, ETA 0:02:10

A Keras "epoch" here is one evaluation interval of a single run: the training
loop (`active_keras.training.loop`) calls `fit(verbose=0)` and leaves the progress to
this line.

Every callback of a run reads the step from one source, `step_of(model)`: the
number of updates the model's optimizer has applied (restored with it from a
checkpoint, so a resumed run counts on from where it stopped).

Example:

```python
curve = CurveLogger(task, ledger, steps_per_epoch=250, path="runs/x/metrics.json",
                    total_steps=3000)
model.fit(ds, epochs=12, steps_per_epoch=250, callbacks=[curve, StopOnNaN()], verbose=0)
```
"""

import datetime
import json
import math
import os
import time

import keras
import tensorflow as tf

from active_keras import files


def step_of(model):
    """The training step of `model`: its optimizer's update count (`optimizer.iterations`).

    The one step source of every callback of a run (curve, checkpoints, NaN
    check, selection log, replay record).
    """
    return int(model.optimizer.iterations.numpy())


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops the run with a clear error when the loss becomes NaN or Inf.

    Unlike `keras.callbacks.TerminateOnNaN`, it raises, so a CLI run exits
    non-zero with a message naming the step (`step_of`) and the value.
    """

    def on_train_batch_end(self, batch, logs=None):
        for name in ("loss", "actor_loss"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                step = step_of(self.model)
                raise NonFiniteLossError(
                    f"The {name.replace('_', ' ')} is {float(value)} at step {step}; "
                    "stopping the run. Lower the learning rate, check the inputs for "
                    "NaN/Inf values, or resume from the last checkpoint."
                )


class CurveLogger(keras.callbacks.Callback):
    """Evaluates the learner every epoch and writes the curve to `metrics.json`.

    Each point holds: step, learner_updates, examples_drawn (super-batch
    examples), examples_trained (sub-batch examples), FLOPs per model and
    total from the ledger, the learner's learning rate at that step, the
    task's metrics on each of its `eval_splits`, the fit logs. Beside it, `timing.json` holds the
    run's wall-clock time (`timing_path`).

    Args:
        task: Provides `evaluate(learner)`.
        ledger: A `flops.FlopLedger`.
        steps_per_epoch: Steps between evaluations (one Keras epoch).
        path: Where `metrics.json` is written (rewritten after each point).
        summary_dir: If set, TensorBoard scalars of the evaluation go there.
        curve: Points of an earlier, resumed part of the run.
        extra: Run facts stored beside the curve (policy, sizes, ...).
        total_steps: The run's length, for the progress line's "step N/total"
            and ETA (without it, neither is shown).
        print_progress: Print one `progress_line` per evaluation.
        writes: Whether this process writes the files (False on a multi-worker
            run's non-chief workers, which still evaluate and print).
    """

    def __init__(
        self,
        task,
        ledger,
        steps_per_epoch,
        path,
        summary_dir=None,
        curve=None,
        extra=None,
        total_steps=None,
        print_progress=True,
        writes=True,
    ):
        super().__init__()
        self.writes = writes
        self.total_steps = total_steps
        self.print_progress = print_progress
        self._clock = None  # (time, step) when this process started training.
        self._timing = {"wall_seconds": 0.0, "sittings": 0}  # Of earlier sittings.
        self.task = task
        self.ledger = ledger
        self.steps_per_epoch = steps_per_epoch
        self.path = path
        self.curve = list(curve or [])
        self.extra = dict(extra or {})
        self.writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None

    def point(self, step, logs=None):
        point = {
            "step": int(step),
            "learner_updates": int(step),
            "examples_drawn": int(step) * self.ledger.super_batch_size,
            "examples_trained": int(step) * self.ledger.sub_batch_size,
        }
        point.update(self.ledger.totals(step))
        # The schedule's value at this step: a budget-matched run must end at zero.
        point["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        for split in self.task.eval_splits:
            point.update(self.task.evaluate(self.model.learner, split))
        for key, value in (logs or {}).items():
            point[f"train_{key}"] = float(value)
        return point

    def add(self, point):
        # A resumed run may re-evaluate a step already on the curve: keep one point per step.
        self.curve = [p for p in self.curve if p["step"] != point["step"]] + [point]
        self.curve.sort(key=lambda p: p["step"])
        self.write()
        if self.writer is not None:
            with self.writer.as_default(step=point["step"]):
                for key, value in point.items():
                    if key != "step":
                        tf.summary.scalar(key, value)
            self.writer.flush()

    def write(self):
        if not self.writes:
            return  # Not the chief: the workers share model_dir, one writes.
        data = dict(self.extra, curve=self.curve)
        with files.atomic_file(self.path) as f:  # A killed run never leaves half a file.
            json.dump(data, f, indent=1)
        if self._clock is not None:
            timing = {
                "wall_seconds": round(
                    self._timing["wall_seconds"] + time.monotonic() - self._clock[0], 1
                ),
                "sittings": self._timing["sittings"] + 1,
            }
            with files.atomic_file(self.timing_path()) as f:
                json.dump(timing, f)

    def timing_path(self):
        """`timing.json` beside `metrics.json`: wall-clock seconds of training and evaluation,
        summed over the sittings of a resumed run (not counting the time between its last
        evaluation and a kill), and their number. Kept out of `metrics.json`, which is the
        same for the same seed however often a run was interrupted."""
        return os.path.join(os.path.dirname(self.path), "timing.json")

    def on_train_begin(self, logs=None):
        step = step_of(self.model)
        if self._clock is None:
            self._clock = (time.monotonic(), step)
            if self.curve and os.path.exists(self.timing_path()):  # Resumed: add to its time.
                with open(self.timing_path()) as f:
                    self._timing = json.load(f)
        if not self.curve:
            self.add(self.point(step))
            self._print(self.curve[-1], note="before training")

    def on_epoch_end(self, epoch, logs=None):
        self.add(self.point(step_of(self.model), logs))
        self._print(self.curve[-1])

    def _print(self, point, note=None):
        if not self.print_progress:
            return
        elapsed = eta = None
        if self._clock is not None:
            start_time, start_step = self._clock
            elapsed = time.monotonic() - start_time
            if self.total_steps and point["step"] > start_step:
                rate = elapsed / (point["step"] - start_step)
                eta = rate * max(self.total_steps - point["step"], 0)
        line = progress_line(
            point, self.task.primary_metric, self.total_steps, elapsed=elapsed, eta=eta
        )
        print(f"{line} ({note})" if note else line, flush=True)


def format_flops(flops):
    """`flops` with an SI prefix: "3.21 TFLOPs"."""
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {prefix}FLOPs"
    return f"{flops:.3g} FLOPs"


def _clock(seconds):
    return str(datetime.timedelta(seconds=round(seconds)))


def progress_line(point, metric, total_steps=None, elapsed=None, eta=None):
    """One line of progress for an evaluated curve point.

    Args:
        point: A curve point (`step`, the metric, `total_flops`, `train_loss`).
        metric: The task's primary metric (test or zero-shot accuracy).
        total_steps: The run's length; shown as "step N/total" if given.
        elapsed: Seconds of training so far in this process, if known.
        eta: Estimated seconds to the end of the run, if known.

    Returns:
        One line, for example "step 1500/3000: test_accuracy 0.8112, train loss
        0.5480, 3.21 TFLOPs, 0:02:10 elapsed, ETA 0:02:10".
    """
    step = f"{point['step']}/{total_steps}" if total_steps else f"{point['step']}"
    parts = [f"{metric} {point[metric]:.4f}"]
    if "train_loss" in point:
        parts.append(f"train loss {point['train_loss']:.4f}")
    if "total_flops" in point:
        parts.append(format_flops(point["total_flops"]))
    if elapsed is not None:
        parts.append(f"{_clock(elapsed)} elapsed")
    if eta is not None:
        parts.append(f"ETA {_clock(eta)}")
    return f"step {step}: " + ", ".join(parts)
