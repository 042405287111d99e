"""Pixels as the models see them: uint8 in storage, float32 in [0, 1] in a batch."""

import tensorflow as tf


def to_unit(images):
    """`images` (uint8, or float 0-255) as float32 in [0, 1].

    Example:

    ```python
    x = pixels.to_unit(tf.constant([[0, 255]], tf.uint8))  # [[0.0, 1.0]]
    ```
    """
    return tf.cast(images, tf.float32) / 255.0
