"""Layout of a two-tower CLIP model's single output tensor.

Keras applies a single compiled loss to every leaf of a dict output, one leaf at
a time, whereas a contrastive loss needs both embeddings (and the logit scale and
bias) together. A CLIP model in this package therefore returns ONE float tensor
`[B, 2 * D + 2]` holding, per pair, the image embedding, the text embedding, the
logit scale and the logit bias (the same two numbers on every row). `unpack`
turns it back into named parts.

Example:

```python
from active_keras.models import clip_outputs

parts = clip_outputs.unpack(model(x))
similarity = parts["image"] @ tf.transpose(parts["text"])
```
"""

import tensorflow as tf


def embedding_dim(y_pred):
    """`D` of a packed output of static width `2 * D + 2`."""
    width = y_pred.shape[-1]
    if width is None or width < 4 or width % 2:
        raise ValueError(
            f"A packed CLIP output has static width 2 * D + 2; got shape {y_pred.shape}."
        )
    return (width - 2) // 2


def pack(image, text, logit_scale, logit_bias):
    """Packs `[B, D]` embeddings and `[B, 1]` scale and bias into `[B, 2 * D + 2]`."""
    return tf.concat([image, text, logit_scale, logit_bias], axis=-1)


def unpack(y_pred):
    """Splits a packed output into a dict.

    Returns:
        `{"image": [B, D], "text": [B, D], "logit_scale": scalar, "logit_bias": scalar}`,
        float32. Scale and bias are the mean over rows (every row holds the same
        value, and the mean keeps their gradients intact).
    """
    y_pred = tf.cast(y_pred, tf.float32)
    d = embedding_dim(y_pred)
    return {
        "image": y_pred[:, :d],
        "text": y_pred[:, d : 2 * d],
        "logit_scale": tf.reduce_mean(y_pred[:, 2 * d]),
        "logit_bias": tf.reduce_mean(y_pred[:, 2 * d + 1]),
    }
