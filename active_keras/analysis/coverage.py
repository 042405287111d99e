"""How evenly a run's updates cover the training set, from its recorded selections.

A uniform draw trains every example about equally often; a sharp selection
policy can concentrate the updates on a part of the data and skip the rest
again and again. On a small data set seen many times, that skipped part is
data the learner never fits, which a budget-matched uniform run does fit.
These statistics measure that from `replay.load_selected_ids`.

Example:

```python
from active_keras.analysis import coverage
from active_keras.training import replay

counts = coverage.selection_counts(replay.load_selected_ids(run_dir), train_ids)
coverage.summarize(counts)["share_below_half"]  # 0.0 for a uniform draw
```
"""

import numpy as np


def selection_counts(selected_ids, train_ids):
    """How often each training example was selected, in the order of `train_ids`.

    Args:
        selected_ids: Ids selected over a run (any shape, e.g. `[steps, b]`).
        train_ids: The ids of every training example (each once).

    Returns:
        int64 `[len(train_ids)]` counts; examples never selected count 0.

    Raises:
        ValueError: A selected id is not a training id (the wrong split or data set).
    """
    train_ids = np.asarray(train_ids, np.int64).reshape(-1)
    selected = np.asarray(selected_ids, np.int64).reshape(-1)
    order = np.argsort(train_ids)
    position = np.searchsorted(train_ids, selected, sorter=order)
    position = np.minimum(position, len(train_ids) - 1)
    index = order[position]
    unknown = train_ids[index] != selected
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} selected id(s) are not training ids, e.g. "
            f"{int(selected[unknown][0])}."
        )
    return np.bincount(index, minlength=len(train_ids)).astype(np.int64)


def lorenz(counts):
    """`(share of examples, share of selections)` of the least-selected examples first."""
    sorted_counts = np.sort(np.asarray(counts, np.float64))
    total = max(sorted_counts.sum(), 1.0)
    x = np.arange(len(sorted_counts) + 1) / max(len(sorted_counts), 1)
    y = np.concatenate([[0.0], np.cumsum(sorted_counts) / total])
    return x, y


def gini(counts):
    """Gini coefficient of the counts: 0 when every example is selected equally often."""
    x, y = lorenz(counts)
    return float(1.0 - np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])))


def summarize(counts):
    """Statistics of selection `counts` (one per training example).

    Returns:
        A dict: `examples`, `selections`, `mean_count`; `share_never` (examples
        never selected), `share_below_half` / `share_below_quarter` (selected
        less than a half / a quarter of the mean count); `top_10pct_share` /
        `bottom_50pct_share` (the share of all selections that went to the
        most-selected tenth / the least-selected half of the examples); `gini`.
    """
    counts = np.asarray(counts, np.int64)
    n, total = len(counts), int(counts.sum())
    mean = total / max(n, 1)
    sorted_counts = np.sort(counts)
    return {
        "examples": n,
        "selections": total,
        "mean_count": mean,
        "share_never": float(np.mean(counts == 0)),
        "share_below_half": float(np.mean(counts < 0.5 * mean)),
        "share_below_quarter": float(np.mean(counts < 0.25 * mean)),
        "top_10pct_share": float(sorted_counts[n - max(n // 10, 1) :].sum() / max(total, 1)),
        "bottom_50pct_share": float(sorted_counts[: n // 2].sum() / max(total, 1)),
        "gini": gini(counts),
    }
