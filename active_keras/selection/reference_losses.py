"""Precomputed reference losses: score the training set once with the frozen reference.

A frozen reference gives an example the same loss every time it is drawn
(without random augmentation), so computing it on every super-batch spends
`F_A * B` FLOPs a step for nothing. `load_or_compute` streams the training
split through the reference once, and caches the per-example losses beside
the reference file, keyed by a fingerprint of the reference's weights and of
the data (ids, labels, images) and by the name of the scoring loss;
`ActiveLearner(reference_losses=table)` then looks them up by `example_id` in
the train step. Only a loss of the pair alone can be precomputed: an
`example_loss` that depends on the rest of the super-batch (ActiveCLIP's
`"siglip"`) is refused.

A cache is never used for another reference or other data: a mismatch is an
error that names what differs.

Example:

```python
from active_keras.selection import reference_losses

table = reference_losses.load_or_compute("auto", model, task, "runs/ref.keras")
model.use_reference_losses(table)  # Before fit().
```
"""

import hashlib
import os

import numpy as np
import tensorflow as tf

from active_keras import files
from active_keras.data.classification import CROSSFIT_FOLDS

BATCH = 1024


def model_fingerprint(model):
    """A digest of a model's weights (values and shapes, in order)."""
    digest = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(w.numpy())
        digest.update(str((w.path, value.shape, value.dtype)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def loss_name(model):
    """The name of the per-example loss `model` scores with (`"compiled"`: its compiled loss)."""
    if model.example_loss is None:
        return "compiled"
    return getattr(model.example_loss, "__name__", repr(model.example_loss))


def check_precomputable(model):
    """Raises ValueError unless `model`'s scoring loss of an example depends on it alone."""
    if getattr(model.example_loss, "depends_on_batch", False):
        raise ValueError(
            f"Reference losses cannot be precomputed for example_loss {loss_name(model)!r}: a "
            "pair's loss depends on the rest of its super-batch. Score with 'negative_logit' "
            "or 'negative_dot' (ClipTask.example_loss), or drop run.reference_losses."
        )


def _batches(task, split="train"):
    """`split` in a fixed order: `(x, y, example_id)` batches."""
    # Every example, the last partial batch too (Open Clip Art drops it by default).
    batches = task.dataset(split, BATCH, shuffle=False, repeat=False, drop_remainder=False)
    for x, y, meta in batches:
        yield x, y, meta["example_id"]


def data_fingerprint(task):
    """A digest of the training split: its ids, labels and inputs, in order."""
    digest = hashlib.sha256()
    for x, y, ids in _batches(task):
        for t in (ids, y, *tf.nest.flatten(x)):
            digest.update(np.ascontiguousarray(t.numpy()).tobytes())
    return digest.hexdigest()


def compute(model, task, folds=None):
    """`(ids, losses)` of the reference of `model` (an `ActiveLearner`) over the training split.

    The losses come from `model.example_losses`, the function the train step
    scores with, so a looked-up loss equals a computed one (up to float
    rounding of a different batch size).

    Args:
        model: The `ActiveLearner`.
        task: The task whose training split is scored.
        folds: Cross-fitted references (`train.load_references`): each fold of
            the train split ("train_fold0", "train_fold1") is then scored by
            the reference trained on the other one, instead of by
            `model.reference`.
    """
    check_precomputable(model)
    if folds is None:
        parts = [("train", model.reference)]
    else:
        parts = list(zip(CROSSFIT_FOLDS, reversed(folds), strict=True))
    ids, losses = [], []
    for split, reference in parts:
        forward = tf.function(
            lambda x, y, r=reference: model.example_losses(y, r(x, training=False))
        )
        for x, y, example_id in _batches(task, split):
            ids.append(example_id.numpy())
            losses.append(forward(x, y).numpy())
    return np.concatenate(ids).astype(np.int64), np.concatenate(losses).astype(np.float32)


def references_fingerprint(model, folds=None):
    """The fingerprint of the reference(s) that score: `model.reference`, or both folds."""
    if folds is None:
        return model_fingerprint(model.reference)
    return hashlib.sha256("".join(model_fingerprint(f) for f in folds).encode()).hexdigest()


def table(ids, losses):
    """A dense lookup table `table[id] = loss` (NaN for ids not given)."""
    out = np.full([int(ids.max()) + 1], np.nan, np.float32)
    out[ids] = losses
    return out


def auto_path(reference_path, data_key):
    """The cache file of `reference_path` for the data with fingerprint `data_key`."""
    return f"{os.path.splitext(reference_path)[0]}.losses-{data_key[:16]}.npz"


def load(path, model, task, data_key=None, folds=None):
    """The table cached in `path`, refused unless it fits the scoring references and the data."""
    try:
        with np.load(path) as cached:
            saved = {k: cached[k] for k in cached.files}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"Reference losses {path!r} cannot be read ({e}).") from e
    for key in ("ids", "losses", "reference_fingerprint", "data_fingerprint"):
        if key not in saved:
            raise ValueError(f"Reference losses {path!r} lack {key!r}: not a file we wrote.")
    if str(saved["reference_fingerprint"]) != references_fingerprint(model, folds):
        raise ValueError(
            f"Reference losses {path!r} were computed with another reference (its weights "
            "differ from the loaded reference's). Delete the file to recompute them."
        )
    # Files from before the loss was recorded scored with the compiled loss or `negative_dot`.
    saved_loss = str(saved.get("example_loss", ""))
    legacy = not saved_loss and loss_name(model) in ("compiled", "negative_dot")
    if not legacy and saved_loss != loss_name(model):
        raise ValueError(
            f"Reference losses {path!r} hold {saved_loss or 'compiled or negative_dot'!r} "
            f"losses; this run scores with "
            f"{loss_name(model)!r}. Delete the file to recompute them."
        )
    data_key = data_key or data_fingerprint(task)
    if str(saved["data_fingerprint"]) != data_key:
        raise ValueError(
            f"Reference losses {path!r} were computed on other data (the training split's "
            "ids, labels or images differ). Delete the file to recompute them."
        )
    return table(saved["ids"], saved["losses"])


def load_or_compute(setting, model, task, reference_path, folds=None):
    """The reference-loss table for a run.

    Args:
        setting: `"auto"` (compute once, cache beside `reference_path`, reuse
            the cache) or the path of a file that `load_or_compute` wrote.
        model: The compiled `ActiveLearner`, with its frozen reference.
        task: The task whose training split is scored.
        reference_path: The reference's `.keras` file (for `"auto"`).
        folds: Cross-fitted references, as for `compute`.

    Returns:
        The dense table for `model.use_reference_losses`.
    """
    if model.reference is None or model.online_reference:
        raise ValueError("Precomputed reference losses need a frozen reference model.")
    check_precomputable(model)
    data_key = data_fingerprint(task)
    path = auto_path(reference_path, data_key) if setting == "auto" else setting
    if os.path.exists(path):
        result = load(path, model, task, data_key, folds)
        print(f"reference losses: loaded {path}", flush=True)
        return result
    if setting != "auto":
        raise FileNotFoundError(f"Reference losses {path!r} do not exist; use 'auto'.")
    ids, losses = compute(model, task, folds)
    with files.atomic_file(path, "wb") as f:  # Atomic: parallel runs may compute the same cache.
        np.savez(
            f,
            ids=ids,
            losses=losses,
            reference_fingerprint=references_fingerprint(model, folds),
            data_fingerprint=data_key,
            example_loss=loss_name(model),
        )
    print(f"reference losses: computed for {len(ids)} examples, cached in {path}", flush=True)
    return table(ids, losses)
