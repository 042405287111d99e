"""Records what the selection does during training, for `active_keras.analysis.report`.

Every `every` learner updates, `SelectionLogger` draws a few super-batches from
its own stream of the training split, scores them with the model's current
scorers (`model.score`), selects with the model's rule (`model.select`) and
appends one compact record to `<log_dir>/records.jsonl`:

- per class: examples available and examples selected;
- the fraction of corrupted labels among the available and the selected
  examples (when the data marks corruption);
- a histogram of the scores of all examples and of the selected ones;
- the selection strength: the std, min and max of each super-batch's scores
  (means over the record's super-batches) and the fraction of the selected
  examples that lie in the top-scored half of their super-batch (a uniform
  draw: 0.5 on average);
- mean per-example losses of each scoring model.

It also writes `<log_dir>/step_<step>.npz` with the highest- and lowest-scored
examples of the last super-batch (images as uint8, scores, labels, whether
they were selected or corrupted, and captions when the task provides them);
only the newest `keep_images` such files are kept.

The logger leaves training untouched: it reads its own batches, and restores
the state of the model's sampling seed after selecting.

Example:

```python
logger = SelectionLogger(task, "runs/x/selection_log", every=250)
model.fit(ds, epochs=12, steps_per_epoch=250, callbacks=[logger])
records = read_records("runs/x/selection_log")
```
"""

import contextlib
import glob
import json
import os

import keras
import numpy as np
import tensorflow as tf

from active_keras import files
from active_keras.training import callbacks as callbacks_lib

RECORDS = "records.jsonl"


def _images(x):
    """The image tensor of a batch: `x` itself, or `x["image"]` for image-text inputs."""
    if isinstance(x, dict):
        return x.get("image")
    return x


def _to_uint8(images):
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]  # Grey images: [N, H, W].
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def _num_classes(task, labels):
    num = getattr(task, "num_classes", None)
    if num is None:
        names = getattr(getattr(task, "data", None), "class_names", None)
        num = len(names) if names is not None else None
    return int(num) if num is not None else int(labels.max()) + 1


class SelectionLogger(keras.callbacks.Callback):
    """Scores and selects sample super-batches every `every` steps and logs the result.

    Args:
        task: The run's task: `dataset("train", B, ...)`, `describe_batch(x, y, metadata)`.
        log_dir: Folder of `records.jsonl` and the example `.npz` files.
        every: Learner updates between records.
        batches_per_record: Super-batches scored per record (counts are summed
            over them, which steadies per-class rates).
        num_examples: Highest- and lowest-scored examples kept (each).
        bins: Bins of the score histograms.
        keep_images: Newest example files kept (older ones are deleted).
        seed: Seed of the logger's own data stream.
        total_steps: The run's last step, recorded even off the grid (before
            its checkpoint); None records the end of each `fit()` instead.
    """

    def __init__(
        self,
        task,
        log_dir,
        every=250,
        batches_per_record=4,
        num_examples=16,
        bins=30,
        keep_images=3,
        seed=1,
        total_steps=None,
    ):
        super().__init__()
        if every <= 0:
            raise ValueError(f"SelectionLogger: every must be > 0, got {every}.")
        self.task = task
        self.log_dir = log_dir
        self.every = int(every)
        self.batches_per_record = int(batches_per_record)
        self.num_examples = int(num_examples)
        self.bins = int(bins)
        self.keep_images = int(keep_images)
        self.seed = seed
        self.total_steps = total_steps
        self._writes = True
        self._iterator = None
        self._last_step = None

    def on_train_begin(self, logs=None):
        size = self.model.super_batch_size
        if size is None:
            raise ValueError("SelectionLogger needs an ActiveLearner with super_batch_size set.")
        start = callbacks_lib.step_of(self.model)
        self._writes = self.model.distribute_strategy.extended.should_checkpoint  # The chief.
        if self._writes:
            os.makedirs(self.log_dir, exist_ok=True)
            _keep_records_up_to(self.log_dir, start)
        # Its own stream (another shuffle seed), so training sees exactly the batches it
        # would see without the logger. Indexed by step: the k-th record reads super-batches
        # k * batches_per_record on, so a resumed run draws what an uninterrupted one draws.
        first = (start // self.every) * self.batches_per_record
        ds = self.task.dataset(
            "train", size, shuffle=True, repeat=True, seed=self.seed, start_batch=first
        )
        self._iterator = iter(ds)

    def _due(self, step):
        on_grid = step % self.every == 0 or step == self.total_steps
        return on_grid and step != self._last_step

    def on_train_batch_end(self, batch, logs=None):
        step = callbacks_lib.step_of(self.model)
        if self._due(step):
            self.record(step)

    def before_checkpoint(self):
        """Records the current step first when it is due (the checkpointer saves before
        `on_train_batch_end` reaches this logger; a run resumed there would miss it)."""
        self.on_train_batch_end(None)

    def on_train_end(self, logs=None):
        step = callbacks_lib.step_of(self.model)
        if self.total_steps is None and step != self._last_step:
            self.record(step)  # The end of the run, when it is not on the grid.

    def _score_and_select(self, x, y, example_id=None):
        scores, index, context = self.model.preview_selection(x, y, example_id)
        losses = {name: np.asarray(v) for name, v in context.get("losses", {}).items()}
        return np.asarray(scores, np.float32), np.asarray(index), losses

    def record(self, step):
        """Scores `batches_per_record` super-batches and appends one record (and examples)."""
        self._last_step = step
        all_scores, selected, labels, corrupted, losses = [], [], [], [], {}
        for _ in range(self.batches_per_record):
            x, y, metadata = next(self._iterator)
            scores, index, batch_losses = self._score_and_select(x, y, metadata.get("example_id"))
            mask = np.zeros(scores.shape[0], bool)
            mask[index] = True
            facts = self.task.describe_batch(x, y, metadata)
            all_scores.append(scores)
            selected.append(mask)
            labels.append(np.asarray(facts["label"]).reshape(-1))
            if "corrupted" in facts:
                corrupted.append(np.asarray(facts["corrupted"], bool).reshape(-1))
            for name, value in batch_losses.items():
                losses.setdefault(name, []).append(value)
        scores, mask, label = (np.concatenate(v) for v in (all_scores, selected, labels))
        num_classes = _num_classes(self.task, label)
        record = {
            **score_spread(all_scores, selected),
            "step": int(step),
            "examples": int(scores.size),
            "selected": int(mask.sum()),
            "class_available": np.bincount(label, minlength=num_classes).tolist(),
            "class_selected": np.bincount(label[mask], minlength=num_classes).tolist(),
            "mean_loss": {k: float(np.mean(np.concatenate(v))) for k, v in losses.items()},
            "score_mean": float(scores.mean()),
            "selected_score_mean": float(scores[mask].mean()),
        }
        if corrupted:
            noisy = np.concatenate(corrupted)
            record["corrupted_available"] = float(noisy.mean())
            record["corrupted_selected"] = float(noisy[mask].mean())
        lo, hi = float(scores.min()), float(scores.max())
        if hi <= lo:  # All scores equal (uniform): one visible bin around them.
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, self.bins + 1)
        record["score_hist"] = {
            "edges": edges.tolist(),
            "all": np.histogram(scores, edges)[0].tolist(),
            "selected": np.histogram(scores[mask], edges)[0].tolist(),
        }
        if not self._writes:
            return  # Every worker scores (the selection may be collective); the chief writes.
        line = json.dumps(record) + "\n"
        with open(os.path.join(self.log_dir, RECORDS), "a") as f:
            # In two parts around the fault tests' pause point: a kill there leaves a torn line.
            f.write(line[: len(line) // 2])
            f.flush()
            files.pause_point(RECORDS)
            f.write(line[len(line) // 2 :])
        self._write_examples(step, x, metadata, facts, all_scores[-1], selected[-1])

    def _write_examples(self, step, x, metadata, facts, scores, mask):
        """The top and bottom `num_examples` of the last super-batch, as a small `.npz`."""
        images = _images(x)
        if images is None:
            return
        n = min(self.num_examples, scores.size // 2)
        order = np.argsort(-scores, kind="stable")
        arrays = {"step": np.int64(step)}
        for name, index in (("top", order[:n]), ("bottom", order[::-1][:n])):
            arrays[f"{name}_images"] = _to_uint8(tf.gather(images, index))
            arrays[f"{name}_scores"] = scores[index]
            arrays[f"{name}_labels"] = np.asarray(facts["label"])[index]
            arrays[f"{name}_selected"] = mask[index]
            if "corrupted" in facts:
                arrays[f"{name}_corrupted"] = np.asarray(facts["corrupted"], bool)[index]
            if "caption" in facts:
                arrays[f"{name}_captions"] = np.asarray(facts["caption"], dtype=str)[index]
        names = getattr(getattr(self.task, "data", None), "class_names", None)
        if names is not None:
            arrays["class_names"] = np.asarray(list(names), dtype=str)
        path = os.path.join(self.log_dir, f"step_{step:08d}.npz")
        with files.atomic_file(path, "wb", site="examples") as f:
            np.savez_compressed(f, **arrays)
        for old in example_files(self.log_dir)[: -self.keep_images or None]:
            files.pause_point("examples_cleanup")
            with contextlib.suppress(FileNotFoundError):  # Removed by a run killed meanwhile.
                os.remove(old)


def score_spread(scores, selected):
    """Selection strength over super-batches: their scores and selected masks (lists).

    Returns:
        `score_std`, `score_min`, `score_max`: means over the super-batches of
        each one's std, min and max; `selected_in_top_half`: the fraction of the
        selected examples that rank in the top half of their super-batch's scores.
    """
    in_top, total = 0.0, 0
    for s, mask in zip(scores, selected, strict=True):
        chosen = s[mask][:, None]
        higher, equal = np.sum(s[None, :] > chosen, axis=1), np.sum(s[None, :] == chosen, axis=1)
        # Ties broken at random: the chance that an example ranks in the top half.
        in_top += float(np.sum(np.clip((s.size // 2 - higher) / equal, 0.0, 1.0)))
        total += int(mask.sum())
    return {
        "score_std": float(np.mean([np.std(s) for s in scores])),
        "score_min": float(np.mean([np.min(s) for s in scores])),
        "score_max": float(np.mean([np.max(s) for s in scores])),
        "selected_in_top_half": in_top / max(total, 1),
    }


def example_files(log_dir):
    """The example files of a log, oldest first."""
    return sorted(glob.glob(os.path.join(log_dir, "step_*.npz")))


def _lines(path):
    """The complete records of `path`; a line torn by a kill (no newline, bad JSON) is left out."""
    records = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n") or not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # A torn line that a later append completed with another record.
    return records


def _keep_records_up_to(log_dir, step):
    """Rewrites `records.jsonl` with its complete records up to `step` (a resumed run's
    checkpoint): the records past it are written again, and a torn line goes."""
    path = os.path.join(log_dir, RECORDS)
    if not os.path.exists(path):
        return
    with files.atomic_file(path, site="records_rewrite") as f:
        for record in _lines(path):
            if record.get("step", 0) <= step:
                f.write(json.dumps(record) + "\n")


def read_records(log_dir):
    """The records of a log in step order (the last one per step wins), or `[]`.

    A line torn by a kill is skipped.
    """
    path = os.path.join(log_dir, RECORDS)
    if not os.path.exists(path):
        return []
    by_step = {record["step"]: record for record in _lines(path) if "step" in record}
    return [by_step[s] for s in sorted(by_step)]


def read_examples(log_dir):
    """The newest example file as a dict of arrays, or None."""
    files = example_files(log_dir)
    if not files:
        return None
    with np.load(files[-1], allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
