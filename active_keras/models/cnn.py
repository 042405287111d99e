"""Plain-Keras convolutional classifiers with a width knob.

The same builder makes the learner and, with smaller widths, the reference and
actor, so their forward FLOPs differ by a controlled factor.

Example:

```python
from active_keras.models import cnn

learner = cnn.cnn_classifier((28, 28, 1), 10, widths=(32, 64), dense_units=128)
reference = cnn.cnn_classifier((28, 28, 1), 10, widths=(8, 16), dense_units=32)
```
"""

import gin
import keras


@gin.configurable
def cnn_classifier(
    input_shape, num_classes, widths=(32, 64), dense_units=128, dropout=0.0, name="cnn"
):
    """Conv(3x3)+ReLU+MaxPool blocks, then a dense layer and logits.

    Args:
        input_shape: `(H, W, C)` of the images.
        num_classes: Number of output logits.
        widths: Filters of each conv block.
        dense_units: Width of the hidden dense layer (0 for none).
        dropout: Dropout rate before the logits.
        name: Model name.

    Returns:
        A built functional `keras.Model` returning logits.
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, width in enumerate(widths):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten()(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", name="hidden")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
