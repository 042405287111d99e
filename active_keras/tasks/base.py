"""The task interface: what a run needs from its domain (data, models, loss, evaluation).

`active_keras.train` and the modules around it are generic over tasks; a task
subclasses `Task` and implements its abstract methods. The two tasks are
`active_keras.tasks.classification.ClassificationTask` (ClassAct) and
`active_keras.tasks.clip_task.ClipTask` (ActiveCLIP).

Example:

```python
class MyTask(Task):
    primary_metric = "test_accuracy"
    ...  # Every abstractmethod below.
```
"""

import abc

# The metric each task reports first (its `primary_metric`), in the order a
# curve is searched for one: ClassificationTask's, then ClipTask's (the README's
# ActiveCLIP headline).
PRIMARY_METRICS = ("test_accuracy", "image_to_text_recall@5")


def primary_metric(point):
    """The first of `PRIMARY_METRICS` in `point` (a curve's dict), or None."""
    return next((m for m in PRIMARY_METRICS if m in point), None)


class Task(abc.ABC):
    """A run's domain.

    Attributes:
        primary_metric: The `evaluate` key that measures progress (one of
            `PRIMARY_METRICS`): speed-ups and the progress line use it.
        example_loss: `fn(y, y_pred) -> [B]` per-example losses used to score
            examples, or None to score with the compiled loss.
        eval_splits: The splits every curve point evaluates (`evaluate`); a
            task with a validation split lists it first, so that runs are
            picked on validation and reported on test.
        supports_crossfit: Whether `dataset` gives the two cross-fit folds of
            the train split, "train_fold0" and "train_fold1" (cross-fitted
            references: `active_keras.train.train_reference`).
    """

    primary_metric = None
    example_loss = None
    eval_splits = ("test",)
    supports_crossfit = False

    @abc.abstractmethod
    def dataset(
        self,
        split,
        batch_size,
        *,
        shuffle=None,
        repeat=None,
        seed=0,
        drop_remainder=None,
        start_batch=0,
    ):
        """A `tf.data.Dataset` of `(x, y, metadata)` batches of `split`.

        Args:
            split: "train", "heldout" (the reference's data) or "test".
            batch_size: Examples per batch (a super-batch when training actively).
            shuffle: Reshuffle every pass, seeded (the task's default if None).
            repeat: Repeat forever (the task's default if None).
            seed: Shuffle seed.
            drop_remainder: Give only full batches (default: `repeat`).
            start_batch: Index of the first batch: a resumed run continues with
                the batch an uninterrupted run would see at that step.

        Returns:
            Batches whose `metadata` dict holds int64 `example_id`s (and, for
            classification, the `corrupted` flags).
        """

    @abc.abstractmethod
    def build_learner(self):
        """A fresh learner `keras.Model`."""

    @abc.abstractmethod
    def build_small(self, name="small"):
        """A fresh model of the actor / reference architecture."""

    @abc.abstractmethod
    def loss(self):
        """The loss `compile()` uses."""

    @abc.abstractmethod
    def metrics(self):
        """The metrics `compile()` uses (a list, maybe empty)."""

    @abc.abstractmethod
    def evaluate(self, model, split="test"):
        """Metrics of `model` on `split`: a dict of floats holding `primary_metric`."""

    @abc.abstractmethod
    def check_model(self, model, role):
        """Raises ValueError, naming `role`, if a loaded `model` does not fit this task."""

    @abc.abstractmethod
    def describe_batch(self, x, y, metadata):
        """Per-example facts of a batch for selection reports: a dict of arrays or lists."""

    def use_model_dir(self, model_dir):
        """Called by `train.run` with the run's directory before anything is built.

        A task keeps files there that the run's models depend on (ClipTask: the
        tokenizer's vocabulary). Does nothing by default.
        """
        del model_dir
