"""Image-text contrastive losses that return one loss per pair of the batch.

`ClipLoss` (softmax, Radford et al. 2021) and `SigLipLoss` (sigmoid, Zhai et al.
2023) read a packed CLIP output (see `active_keras.models.clip_outputs`) and
ignore `y_true`. Their `call` returns `[B]`: pair `i`'s share of the batch loss,
computed against every other pair of the same batch, so that

* the compiled (reduced, mean) loss is exactly the usual batch loss, and
* the unreduced loss over a super-batch scores each pair by its contrastive loss
  within the super-batch (`ActiveLearner.per_example_loss`).

`negative_dot` is the cheap per-pair score of the paper's actor and reference:
`-z_img . z_txt`, which needs no batch-wide softmax.

Example:

```python
from active_keras import losses

model.compile(optimizer="adam", loss=losses.SigLipLoss())
learner = ActiveLearner(model, reference, example_loss=losses.negative_dot)
```
"""

import keras
import tensorflow as tf

from active_keras.models import clip_outputs


def _similarities(y_pred):
    parts = clip_outputs.unpack(y_pred)
    return tf.matmul(parts["image"], parts["text"], transpose_b=True), parts


def clip_per_pair(y_pred):
    """Per-pair CLIP loss: mean of pair `i`'s image->text and text->image cross-entropy."""
    sim, parts = _similarities(y_pred)
    logits = parts["logit_scale"] * sim
    labels = tf.range(tf.shape(logits)[0])
    image_to_text = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    text_to_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits))
    return 0.5 * (image_to_text + text_to_image)


def siglip_per_pair(y_pred):
    """Per-pair SigLIP loss: half of pair `i`'s row plus half of its column.

    The SigLIP batch loss is `-1/B * sum_ij log sigmoid(z_ij * (t * x_i.y_j + b))`
    with `z_ii = 1` and `z_ij = -1` otherwise; splitting every term between its
    row and its column pair keeps the mean over pairs equal to that loss.
    """
    sim, parts = _similarities(y_pred)
    logits = parts["logit_scale"] * sim + parts["logit_bias"]
    signs = 2.0 * tf.eye(tf.shape(logits)[0], dtype=logits.dtype) - 1.0
    terms = tf.math.softplus(-signs * logits)  # = -log sigmoid(z * logits)
    return 0.5 * (tf.reduce_sum(terms, axis=1) + tf.reduce_sum(terms, axis=0))


@keras.saving.register_keras_serializable(package="active_keras")
class ClipLoss(keras.losses.Loss):
    """CLIP softmax contrastive loss; `call` returns the per-pair loss `[B]`."""

    def __init__(self, name="clip_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        del y_true  # The positives are the diagonal of the batch.
        return clip_per_pair(y_pred)


@keras.saving.register_keras_serializable(package="active_keras")
class SigLipLoss(keras.losses.Loss):
    """SigLIP sigmoid contrastive loss; `call` returns the per-pair loss `[B]`."""

    def __init__(self, name="siglip_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        del y_true
        return siglip_per_pair(y_pred)


def negative_dot(y_true, y_pred):
    """`-z_img . z_txt` per pair, `[B]`: the paper's actor / reference loss for scoring."""
    del y_true
    parts = clip_outputs.unpack(y_pred)
    return -tf.reduce_sum(parts["image"] * parts["text"], axis=-1)


_LOSSES = {"clip": ClipLoss, "siglip": SigLipLoss}


def get(name):
    """A new loss object by name: `"clip"` or `"siglip"`."""
    if name not in _LOSSES:
        raise ValueError(f"Unknown contrastive loss {name!r}; choose from {sorted(_LOSSES)}.")
    return _LOSSES[name]()
