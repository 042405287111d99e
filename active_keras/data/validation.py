"""Checks on examples that name the offending value, usable eagerly and in `tf.data`."""

import numpy as np
import tensorflow as tf


def check_labels(labels, num_classes):
    """Raises ValueError naming the first label outside `[0, num_classes)` (numpy)."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"Label {labels[i]} at index {i} is outside the class range [0, {num_classes}) "
            f"({bad.size} such labels)."
        )


def check_images(images, shape):
    """Raises ValueError if `images` are not `[N, *shape]` (numpy)."""
    if tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(
            f"Images have shape {tuple(images.shape[1:])}; the model expects {tuple(shape)}."
        )


def label_range_op(num_classes):
    """A `tf.data` map function failing on a label outside `[0, num_classes)`."""

    def check(image, label, *rest):
        # The assertion messages carry the offending label's value.
        checks = [
            tf.debugging.assert_less(
                label,
                tf.cast(num_classes, label.dtype),
                message=f"Label outside the class range [0, {num_classes})",
            ),
            tf.debugging.assert_non_negative(
                label, message=f"Label outside the class range [0, {num_classes})"
            ),
        ]
        with tf.control_dependencies(checks):
            label = tf.identity(label)
        return (image, label, *rest)

    return check
