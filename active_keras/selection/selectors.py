"""Selection rules: choose `k` indices of a super-batch from per-example scores.

Both rules return exactly `k` distinct indices with a static shape, so they
compile under XLA.

Example:

```python
import tensorflow as tf
from active_keras.selection import selectors

scores = tf.constant([0.1, 3.0, -1.0, 2.0])
selectors.get("topk")(scores, k=2)  # -> [1, 3]
```
"""

import keras
import tensorflow as tf


def topk(scores, k, temperature=1.0, seed=None):
    """The `k` highest-scoring indices (ties go to the lower index)."""
    del temperature, seed
    return tf.math.top_k(scores, k=k, sorted=True).indices


def sample(scores, k, temperature=1.0, seed=None):
    """Samples `k` indices without replacement from `softmax(scores / temperature)`.

    Uses the Gumbel-top-k trick: adding independent Gumbel(0, 1) noise to the
    logits and keeping the top `k` is an exact sample without replacement.

    Args:
        scores: Float vector of per-example scores.
        k: Number of indices to draw.
        temperature: Softmax temperature (a number or a scalar tensor); larger is
            closer to uniform.
        seed: A `keras.random.SeedGenerator` (stateful, checkpointable) or int.
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature}.")
    # Clip away from 0 so log(-log(u)) stays finite.
    u = keras.random.uniform(tf.shape(scores), minval=1e-7, maxval=1.0 - 1e-7, seed=seed)
    gumbel = -tf.math.log(-tf.math.log(u))
    logits = tf.cast(scores, tf.float32) / temperature + gumbel
    return tf.math.top_k(logits, k=k, sorted=True).indices


_SELECTORS = {"topk": topk, "sample": sample}


def register(name, fn):
    """Registers selection function `fn` as `name` (set `fn.uses_context = True` to get context).

    The joint selections register themselves from `active_keras.selection.joint`,
    which the package imports; this module imports nothing of the package.
    """
    _SELECTORS[name] = fn
    return fn


def get(name):
    """Returns the selection function registered as `name`."""
    if callable(name):
        return name
    if name not in _SELECTORS:
        raise ValueError(f"Unknown selection {name!r}; choose from {sorted(_SELECTORS)}.")
    return _SELECTORS[name]
