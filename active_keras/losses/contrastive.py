"""Image-text contrastive losses that return one loss per pair of the batch.

`ClipLoss` (softmax, Radford et al. 2021) and `SigLipLoss` (sigmoid, Zhai et al.
2023) read a packed CLIP output (see `active_keras.models.clip_outputs`) and
ignore `y_true`. Their `call` returns `[B]`: pair `i`'s share of the batch loss,
computed against every other pair of the same batch, so that

* the compiled (reduced, mean) loss is exactly the usual batch loss, and
* the unreduced loss over a super-batch scores each pair by its contrastive loss
  within the super-batch (`ActiveLearner.per_example_loss`).

`negative_dot` is the cheap per-pair score of the paper's actor and reference:
`-z_img . z_txt`, which needs no batch-wide softmax; `negative_logit` is the same
in logit units, `-t z_img . z_txt` with the model's learned logit scale `t`.
`EXAMPLE_LOSSES` names the per-pair scoring losses (`get_example_loss`); the
per-pair SigLIP loss depends on the rest of the super-batch
(`depends_on_batch`), so it cannot be precomputed per example.

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


def negative_logit(y_true, y_pred):
    """`-t z_img . z_txt` per pair, `[B]`: `negative_dot` in the logit units of SigLIP / CLIP.

    `t` is the model's learned logit scale, so a score difference means the
    same change of a logit (and, for the sigmoid loss, about the same change of
    loss in nats) whatever model scored it: the sampling temperature then means
    the same for an actor and a reference with different scales, and for
    ClassAct's cross-entropy scores. The logit bias is the same for every pair
    of a model and would not change a selection, so it is left out.
    """
    del y_true
    parts = clip_outputs.unpack(y_pred)
    return -parts["logit_scale"] * tf.reduce_sum(parts["image"] * parts["text"], axis=-1)


def siglip_example_loss(y_true, y_pred):
    """The per-pair SigLIP loss within the scored (super-)batch, as an `example_loss`."""
    del y_true
    return siglip_per_pair(y_pred)


siglip_example_loss.depends_on_batch = True  # A pair's loss reads every other pair's outputs.

EXAMPLE_LOSSES = {
    "negative_dot": negative_dot,
    "negative_logit": negative_logit,
    "siglip": siglip_example_loss,
}


def get_example_loss(name):
    """The per-pair scoring loss `fn(y_true, y_pred) -> [B]` named `name` (`EXAMPLE_LOSSES`)."""
    if name not in EXAMPLE_LOSSES:
        raise ValueError(f"Unknown example loss {name!r}; choose from {sorted(EXAMPLE_LOSSES)}.")
    return EXAMPLE_LOSSES[name]


def depends_on_batch(example_loss):
    """Whether a pair's `example_loss` depends on the other pairs of its batch."""
    return bool(getattr(example_loss, "depends_on_batch", False))


_LOSSES = {"clip": ClipLoss, "siglip": SigLipLoss}


def get(name):
    """A new loss object by name: `"clip"` or `"siglip"`."""
    if name not in _LOSSES:
        raise ValueError(f"Unknown contrastive loss {name!r}; choose from {sorted(_LOSSES)}.")
    return _LOSSES[name]()
