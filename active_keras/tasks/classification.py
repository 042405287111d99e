"""The image-classification task (ClassAct): data, models, loss and evaluation.

A task is the one place where a run's domain lives; `active_keras.train` is
generic over tasks. Its interface is `active_keras.tasks.base.Task`: data
splits, fresh models, the loss and metrics, evaluation, model checks and
per-example facts for the selection log.

Example:

```python
task = ClassificationTask(data=ImageClassificationData("digits"))
learner = task.build_learner()
print(task.evaluate(learner)["test_accuracy"])
```
"""

import gin
import keras
import numpy as np
import tensorflow as tf

from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from active_keras.tasks import base


@gin.configurable
class ClassificationTask(base.Task):
    """Image classification with integer labels and logits outputs.

    Args:
        data: An `ImageClassificationData` (or anything with its interface).
        learner_fn: `fn(input_shape, num_classes) -> keras.Model` for the learner.
        small_fn: The same for the actor and reference architecture.
        eval_batch_size: Batch size of evaluation.
    """

    example_loss = None  # Score with the compiled cross-entropy.
    primary_metric = "test_accuracy"
    supports_crossfit = True  # ImageClassificationData.split gives the folds.

    def __init__(
        self,
        data=None,
        learner_fn=cnn.cnn_classifier,
        small_fn=cnn.cnn_classifier,
        eval_batch_size=1000,
    ):
        self.data = data if data is not None else ImageClassificationData()
        self.learner_fn = learner_fn
        self.small_fn = small_fn
        self.eval_batch_size = eval_batch_size
        self._eval_fn = {}

    @property
    def input_shape(self):
        return self.data.input_shape

    @property
    def num_classes(self):
        return self.data.num_classes

    @property
    def eval_splits(self):
        return ("validation", "test") if "validation" in self.data.splits else ("test",)

    def dataset(self, split, batch_size, **kwargs):
        return self.data.dataset(split, batch_size, **kwargs)

    def build_learner(self):
        return self.learner_fn(self.input_shape, self.num_classes, name="learner")

    def build_small(self, name="small"):
        return self.small_fn(self.input_shape, self.num_classes, name=name)

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def check_model(self, model, role):
        """Raises ValueError if `model` does not take this task's images or give its classes."""
        got_in = tuple(model.input_shape[1:])
        got_out = model.output_shape[-1]
        if got_in != tuple(self.input_shape) or got_out != self.num_classes:
            raise ValueError(
                f"The {role} model takes inputs {got_in} and predicts {got_out} classes; "
                f"the data set {self.data.name!r} has inputs {tuple(self.input_shape)} and "
                f"{self.num_classes} classes. Retrain it for this data (delete the file, or "
                "point the reference path elsewhere)."
            )

    def evaluate(self, model, split="test"):
        """Accuracy and mean cross-entropy of `model` on `split`."""
        key = (id(model), split)
        if key not in self._eval_fn:
            loss_fn = self.loss()

            @tf.function(jit_compile=True)
            def batch_stats(x, y):
                logits = model(x, training=False)
                correct = tf.reduce_sum(
                    tf.cast(tf.argmax(logits, -1, output_type=y.dtype) == y, tf.float32)
                )
                loss = tf.reduce_sum(tf.cast(loss_fn.call(y, logits), tf.float32))
                return correct, loss

            self._eval_fn[key] = batch_stats
        batch_stats = self._eval_fn[key]
        correct = total = loss = 0.0
        for x, y, _ in self.dataset(split, self.eval_batch_size):
            c, s = batch_stats(x, y)
            correct, loss, total = correct + float(c), loss + float(s), total + int(y.shape[0])
        return {f"{split}_accuracy": correct / total, f"{split}_loss": loss / total}

    def describe_batch(self, x, y, metadata):
        """Per-example facts for selection reports (class labels and corruption)."""
        del x
        return {"label": np.asarray(y), "corrupted": np.asarray(metadata["corrupted"])}
