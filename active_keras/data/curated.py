"""Curated training data on disk: TFRecord shards of kept examples, and their reader.

`active_keras.curation.curate` scores a split once with a reference model and writes the
kept examples as `curated-XXXXX-of-YYYYY.tfrecord` shards of `tf.train.Example`
records (raw uint8 image bytes, its shape, label, stable example id and the
label-noise flag), with a `manifest.json` of record counts per shard. This
module reads them back: `curated_dataset` streams them for training, and
`load_split` reads them into the arrays of an `ImageClassificationData` train
split (`ImageClassificationData(curated_dir=...)`).

Example:

```python
from active_keras.data import curated

ds = curated.curated_dataset("runs/curated/curated-*.tfrecord").batch(128)
images, labels, meta = next(iter(ds))  # float32 in [0, 1], int32, ids and flags
```
"""

import glob
import json
import os

import numpy as np
import tensorflow as tf

from active_keras.data import pixels

MANIFEST = "manifest.json"
PATTERN = "curated-*.tfrecord"

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "shape": tf.io.FixedLenFeature([3], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "example_id": tf.io.FixedLenFeature([], tf.int64),
    "corrupted": tf.io.FixedLenFeature([], tf.int64),
}


class CorruptShardError(ValueError):
    """A curated shard is truncated, fails its checksum, or disagrees with the manifest."""


def shard_name(index, count):
    return f"curated-{index:05d}-of-{count:05d}.tfrecord"


def encode_example(image, label, example_id, corrupted):
    """One `tf.train.Example` (serialised) for a uint8 `[H, W, C]` image."""
    image = np.asarray(image, np.uint8)
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(image.shape))),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "example_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(example_id)])),
        "corrupted": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(corrupted)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _parse(record):
    ex = tf.io.parse_single_example(record, _FEATURES)
    image = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), ex["shape"])
    meta = {"corrupted": ex["corrupted"] > 0, "example_id": ex["example_id"]}
    return image, tf.cast(ex["label"], tf.int32), meta


def glob_shards(folder):
    """The curated shards in `folder`, sorted (possibly none)."""
    return sorted(glob.glob(os.path.join(folder, PATTERN)))


def _files(path_glob):
    if os.path.isdir(path_glob):
        path_glob = os.path.join(path_glob, PATTERN)
    files = sorted(glob.glob(path_glob))
    if not files:
        raise FileNotFoundError(f"No curated TFRecord shards match {path_glob!r}.")
    return files


def _expected_counts(files):
    """Record counts of the manifest beside the shards.

    Raises:
        CorruptShardError: There is no manifest: the curation did not finish
            (`curate` writes it last), so the shards may be a mix or a part.
    """
    folder = os.path.dirname(files[0])
    path = os.path.join(folder, MANIFEST)
    if not os.path.exists(path):
        raise CorruptShardError(
            f"The curated folder {folder!r} has no {MANIFEST}: its curation did not finish "
            "(it is written last). Rerun active_keras.curation.curate."
        )
    with open(path) as f:
        return json.load(f)["shards"]


def verify_shards(path_glob):
    """Reads every shard once; returns `{file: records}` or raises `CorruptShardError`.

    TFRecord records carry CRCs: a truncated or damaged shard is detected, and
    the error names the file (a bare `tf.data` error would not). Counts are
    also checked against `manifest.json`, which catches a shard cut exactly at
    a record boundary; the manifest must be there (`curate` writes it last), and
    a folder's shards must be exactly those it lists.

    Example:

    ```python
    counts = verify_shards("runs/curated")  # {".../curated-00000-of-00002.tfrecord": 5000, ...}
    ```
    """
    files = _files(path_glob)
    expected = _expected_counts(files)
    found = {os.path.basename(p) for p in files}
    missing = sorted(set(expected) - found) if os.path.isdir(path_glob) else []
    extra = sorted(found - set(expected))
    if missing or extra:
        raise CorruptShardError(
            f"The curated shards in {os.path.dirname(files[0])!r} do not match its manifest "
            f"(missing: {missing or 'none'}; not listed: {extra or 'none'}). Rerun "
            "active_keras.curation.curate."
        )
    counts = {}
    for path in files:
        n = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                n += 1
        except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
            raise CorruptShardError(
                f"Curated shard {path} is corrupt or truncated after {n} good records "
                f"({e.message.splitlines()[0]}); rerun active_keras.curation.curate."
            ) from None
        want = expected.get(os.path.basename(path))
        if want is not None and want != n:
            raise CorruptShardError(
                f"Curated shard {path} holds {n} records; its manifest says {want}. "
                "Rerun active_keras.curation.curate."
            )
        counts[path] = n
    return counts


def curated_dataset(path_glob, verify=True):
    """Curated examples as a `tf.data.Dataset` of `(image, label, metadata)`.

    Images are float32 in `[0, 1]` (as `ImageClassificationData.dataset` gives
    them), labels int32, metadata `{"corrupted": bool, "example_id": int64}`.
    Unbatched and in file order: shuffle, repeat and batch as needed.

    Args:
        path_glob: A glob of shards, or the curation folder.
        verify: Read every shard once first (`verify_shards`), so that damage is
            reported by file name before training starts.
    """
    files = _files(path_glob)
    if verify:
        verify_shards(path_glob)
    ds = tf.data.TFRecordDataset(files).map(_parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda x, y, m: (pixels.to_unit(x), y, m))


def load_split(path_glob):
    """The curated examples as numpy arrays `(images uint8, labels, corrupted, ids)`."""
    verify_shards(path_glob)
    images, labels, corrupted, ids = [], [], [], []
    ds = tf.data.TFRecordDataset(_files(path_glob)).map(_parse).batch(4096)
    for x, y, m in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
        corrupted.append(m["corrupted"])
        ids.append(m["example_id"])
    if not ids:
        raise ValueError(f"The curated shards {path_glob!r} hold no examples.")
    return tuple(np.concatenate(a) for a in (images, labels, corrupted, ids))
