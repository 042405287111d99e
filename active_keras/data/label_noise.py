"""Seeded label noise that records which labels it changed."""

import numpy as np


def corrupt_labels(labels, fraction, num_classes, seed=0):
    """Replaces a seeded `fraction` of `labels` by a different random class.

    Each corrupted label is drawn uniformly from the *other* classes, so the
    returned mask is exactly the set of changed labels.

    Returns:
        `(noisy_labels, corrupted)`: int32 labels and a bool mask.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label noise fraction must be in [0, 1], got {fraction}.")
    labels = np.asarray(labels, np.int32)
    rng = np.random.default_rng(seed)
    corrupted = np.zeros(len(labels), bool)
    corrupted[rng.permutation(len(labels))[: int(round(fraction * len(labels)))]] = True
    shift = rng.integers(1, num_classes, size=len(labels))
    noisy = np.where(corrupted, (labels + shift) % num_classes, labels).astype(np.int32)
    return noisy, corrupted
