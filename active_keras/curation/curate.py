"""Amortised scoring: score a split once with a reference model, keep the best fraction.

Instead of scoring every super-batch during training, `curate` streams a split
through a saved reference model once, scores every example, and writes the
top `keep_fraction` as TFRecord shards that any training run can read
(`ImageClassificationData.curated_dir`, or `data.curated.curated_dataset`).

- score `easy_reference` (default): `-reference_loss`, the reference's
  per-example loss (the task's loss, unreduced);
- with `--actor=PATH`, `learnability`: `actor_loss - reference_loss`.

Memory stays flat in the number of examples scored: batches are scored one at
a time and only the scores (with ids, labels and flags: 17 bytes an example)
are kept; a second pass writes the kept examples.

Outputs in `--out_dir`: `scores.npz` (`example_id`, `score`, `label`,
`corrupted`, in split order), `manifest.json`, `curated-*.tfrecord`,
`score_histogram.png` and `extremes.png` (highest / lowest scored examples).

Example:

```
python -m active_keras.curation.curate --reference=runs/reference.keras --data=fashion_mnist \
    --label_noise=0.2 --keep_fraction=0.5 --out_dir=runs/curated
python -m active_keras.main --gin_file=gin/uniform.gin --model_dir=runs/on_curated \
    --gin_bindings="ImageClassificationData.curated_dir = 'runs/curated'"
```
"""

import argparse
import contextlib
import glob
import json
import os
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from active_keras import files, quiet
from active_keras.data import curated, pixels
from active_keras.data.classification import ImageClassificationData
from active_keras.selection import policies
from active_keras.tasks.classification import ClassificationTask


def _batches(split, batch_size):
    """`(start, images uint8, labels)` slices of a split, in order."""
    for start in range(0, len(split), batch_size):
        stop = start + batch_size
        yield start, split.images[start:stop], split.labels[start:stop]


def scoring_policy(actor=None):
    """The policy curation scores with: `learnability` with an actor, else `easy_reference`.

    Registered policies (`active_keras.selection.policies`), as training scores.
    """
    return "easy_reference" if actor is None else "learnability"


def score_split(split, reference, loss, actor=None, batch_size=1024):
    """Scores every example of `split` under `scoring_policy(actor)`; float32, in split order.

    Args:
        split: A `classification.Split` (uint8 images, labels).
        reference: The frozen reference model.
        loss: A Keras loss object; its unreduced `call` gives per-example losses.
        actor: Optional actor model: the score becomes learnability.
        batch_size: Examples scored at a time.

    Example:

    ```python
    scores = score_split(data.splits["train"], reference, task.loss())
    ```
    """

    policy = policies.get(scoring_policy(actor))
    models = {"reference": reference, "actor": actor}

    @tf.function(jit_compile=False)
    def batch_scores(x, y):
        x = pixels.to_unit(x)  # As the training pipeline feeds it.
        losses = {
            name: tf.cast(loss.call(y, models[name](x, training=False)), tf.float32)
            for name in policy.requires
        }
        return policy(losses, tf.shape(y)[0])

    scores = np.empty(len(split), np.float32)
    for start, x, y in _batches(split, batch_size):
        scores[start : start + len(y)] = batch_scores(x, y).numpy()
    return scores


def kept_mask(scores, keep_fraction):
    """The top `round(keep_fraction * N)` scores; ties go to the earlier example."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}.")
    k = int(round(keep_fraction * len(scores)))
    mask = np.zeros(len(scores), bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def write_shards(split, mask, out_dir, examples_per_shard=10000, batch_size=1024):
    """Writes the examples of `split` where `mask` is set into `out_dir` (a fresh folder:
    `curate` publishes them); returns `{shard: count}`."""
    total = int(mask.sum())
    count = max(1, -(-total // examples_per_shard))
    counts, writer, shard, in_shard = {}, None, 0, 0
    for start, x, y in _batches(split, batch_size):
        for i in np.flatnonzero(mask[start : start + len(y)]):
            if writer is None:
                name = curated.shard_name(shard, count)
                writer = tf.io.TFRecordWriter(os.path.join(out_dir, name))
            j = start + i
            writer.write(curated.encode_example(x[i], y[i], split.ids[j], split.corrupted[j]))
            in_shard += 1
            if in_shard == examples_per_shard:
                files.pause_point("curated_shard")
                writer.close()
                counts[curated.shard_name(shard, count)] = in_shard
                writer, shard, in_shard = None, shard + 1, 0
    if writer is not None:
        writer.close()
        counts[curated.shard_name(shard, count)] = in_shard
    return counts


def _plots(out_dir, split, scores, mask, num_examples=16):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60)  # Shared, so the groups line up.
    ax.hist(scores, bins=bins, color="0.7", label="all")
    ax.hist(scores[mask], bins=bins, color="C0", alpha=0.7, label="kept")
    if split.corrupted.any():
        ax.hist(scores[split.corrupted], bins=bins, color="C3", alpha=0.6, label="corrupted label")
    ax.set_yscale("log")  # Scores pile up near the top; the tail is where the noise is.
    ax.set_xlabel("score")
    ax.set_ylabel("examples (log scale)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "score_histogram.png"), dpi=100)
    plt.close(fig)

    order = np.argsort(-scores, kind="stable")
    n = min(num_examples, len(order))
    rows = {"highest": order[:n], "lowest": order[::-1][:n]}
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.8), squeeze=False)
    for r, (title, index) in enumerate(rows.items()):
        for c, j in enumerate(index):
            ax = axes[r][c]
            ax.imshow(split.images[j].squeeze(), cmap="gray")
            flag = "*" if split.corrupted[j] else ""
            ax.set_title(f"{scores[j]:.2f}\ny={split.labels[j]}{flag}", fontsize=6)
            ax.axis("off")
        axes[r][0].text(-0.5, 0.5, title, transform=axes[r][0].transAxes, ha="right")
    fig.suptitle("highest (top) and lowest scored; * marks a corrupted label", fontsize=8)
    fig.savefig(os.path.join(out_dir, "extremes.png"), dpi=100)
    plt.close(fig)


def _load(model):
    return keras.models.load_model(model, compile=False) if isinstance(model, str) else model


def curate(
    reference,
    data,
    out_dir,
    keep_fraction=0.5,
    split="train",
    actor=None,
    batch_size=1024,
    examples_per_shard=10000,
    plots=True,
):
    """Scores `data`'s `split` with `reference` (and `actor`), writes the kept top fraction.

    Args:
        reference: A `keras.Model` or a `.keras` path.
        data: An `ImageClassificationData`.
        out_dir: Output folder (created).
        keep_fraction: Fraction of the split kept, highest scores first.
        split: The split scored and curated.
        actor: Optional model or path; the score is then learnability.
        batch_size: Examples scored at a time.
        examples_per_shard: Records per TFRecord shard.
        plots: Write the histogram and the example grid.

    Returns:
        The manifest (a dict, also written to `manifest.json`).
    """
    if not 0.0 < keep_fraction <= 1.0:  # Before the scoring pass, not after it.
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}.")
    reference, actor = _load(reference), _load(actor)
    task = ClassificationTask(data=data)
    task.check_model(reference, "reference")
    if actor is not None:
        task.check_model(actor, "actor")
    os.makedirs(out_dir, exist_ok=True)
    part = data.splits[split]
    scores = score_split(part, reference, task.loss(), actor=actor, batch_size=batch_size)
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are not finite.")
    mask = kept_mask(scores, keep_fraction)
    for stale in glob.glob(os.path.join(out_dir, f"{PARTIAL}*")):
        shutil.rmtree(stale, ignore_errors=True)  # Left by a curation killed before publishing.
    # Everything is written into a temporary folder first, then moved in, the manifest last:
    # a folder without a manifest is an unfinished curation, which readers refuse.
    tmp = tempfile.mkdtemp(prefix=PARTIAL, dir=out_dir)
    files.pause_point("scores.npz")
    np.savez(
        os.path.join(tmp, "scores.npz"),
        example_id=part.ids,
        score=scores,
        label=part.labels,
        corrupted=part.corrupted,
    )
    counts = write_shards(part, mask, tmp, examples_per_shard, batch_size)
    manifest = {
        "data": data.name,
        "split": split,
        "policy": scoring_policy(actor),
        "keep_fraction": keep_fraction,
        "scored": len(scores),
        "kept": int(mask.sum()),
        "threshold": float(scores[mask].min()) if mask.any() else None,
        "corrupted_fraction_all": float(part.corrupted.mean()),
        "corrupted_fraction_kept": float(part.corrupted[mask].mean()) if mask.any() else None,
        "shards": counts,
    }
    if plots:
        _plots(tmp, part, scores, mask)
    _publish(tmp, out_dir, manifest)
    return manifest


PARTIAL = ".partial-"  # The temporary folder of a curation in progress, inside out_dir.


def _publish(tmp, out_dir, manifest):
    """Moves a finished curation from `tmp` into `out_dir`, its manifest last."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out_dir, curated.MANIFEST))  # From here on: unfinished.
    files.pause_point("curate_unpublished")
    for old in curated.glob_shards(out_dir):  # A previous curation's shards must not mix in.
        with contextlib.suppress(FileNotFoundError):
            os.remove(old)
    for name in sorted(os.listdir(tmp)):
        files.pause_point("curate_move")
        os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    with files.atomic_file(os.path.join(out_dir, curated.MANIFEST)) as f:
        json.dump(manifest, f, indent=1)
    os.rmdir(tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="Saved .keras reference model.")
    parser.add_argument("--actor", help="Optional .keras actor: score by learnability.")
    parser.add_argument("--data", default="fashion_mnist", help="fashion_mnist, digits, ...")
    parser.add_argument("--split", default="train")
    parser.add_argument("--label_noise", type=float, default=0.0)
    parser.add_argument("--heldout_size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="Data seed (held-out cut, noise).")
    parser.add_argument("--keep_fraction", type=float, default=0.5)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--examples_per_shard", type=int, default=10000)
    parser.add_argument("--out_dir", required=True)
    args = parser.parse_args(argv)
    kwargs = {} if args.heldout_size is None else {"heldout_size": args.heldout_size}
    try:
        data = ImageClassificationData(
            args.data, label_noise=args.label_noise, seed=args.seed, **kwargs
        )
        manifest = curate(
            args.reference,
            data,
            args.out_dir,
            keep_fraction=args.keep_fraction,
            split=args.split,
            actor=args.actor,
            batch_size=args.batch_size,
            examples_per_shard=args.examples_per_shard,
        )
    except (ValueError, OSError) as e:
        print(quiet.error_line(e), file=sys.stderr)
        return 1
    print(
        f"kept {manifest['kept']} of {manifest['scored']} ({manifest['policy']}); corrupted "
        f"labels {manifest['corrupted_fraction_all']:.3f} -> "
        f"{manifest['corrupted_fraction_kept']:.3f}; wrote {args.out_dir}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
