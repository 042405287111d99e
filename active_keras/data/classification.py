"""Image-classification data: named sources, splits, label noise and `tf.data` pipelines.

Example:

```python
from active_keras.data import classification

data = classification.ImageClassificationData("fashion_mnist", label_noise=0.2)
for images, labels, meta in data.train_dataset(batch_size=128).take(1):
    print(images.shape, meta["corrupted"].numpy().mean())
```
"""

import dataclasses

import gin
import numpy as np
import tensorflow as tf

from active_keras.data import curated, fashion_mnist, image_folder, pixels, validation
from active_keras.data.label_noise import corrupt_labels


@dataclasses.dataclass
class Split:
    """Images (uint8, `[N, H, W, C]`), int32 labels, corruption mask and stable ids."""

    images: np.ndarray
    labels: np.ndarray
    corrupted: np.ndarray
    ids: np.ndarray

    def __len__(self):
        return len(self.labels)


def _digits(split, data_dir=None):
    from sklearn.datasets import load_digits

    del data_dir  # Bundled with scikit-learn.
    d = load_digits()
    images = (d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    cut = 1400  # 1,797 in all: a fixed train / test cut.
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])


# The two halves of the train split that cross-fitted references train on (`split`).
CROSSFIT_FOLDS = ("train_fold0", "train_fold1")


def _arrays(split):
    """The split's arrays in field order (`dataclasses.astuple` would deep-copy them)."""
    return [getattr(split, f.name) for f in dataclasses.fields(split)]


def _concat(a, b):
    return Split(*(np.concatenate(pair) for pair in zip(_arrays(a), _arrays(b), strict=True)))


# name -> (loader(split) -> (images, labels), num_classes, class_names)
SOURCES = {
    "fashion_mnist": (fashion_mnist.load, 10, fashion_mnist.CLASS_NAMES),
    "digits": (_digits, 10, tuple(str(i) for i in range(10))),
}


def _tfds_source(name, data_dir=None):
    """A `tfds:NAME` source, read only from a locally prepared TFDS copy.

    The builder is the registered one, or, for a name whose code is not
    imported, the one its prepared files describe (`data_dir`, else TFDS's
    default). The image and label features are found by type; the test split
    is "test", else "validation".
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        raise FileNotFoundError(
            f"TFDS data set {name!r} is neither registered nor prepared under "
            f"{data_dir or tfds.core.constants.DATA_DIR}: {e}"
        ) from None
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS data set {name!r} is not prepared under {builder.data_dir}; nothing is "
            f"downloaded at run time. Prepare it where there is network (`tfds build {name}`) "
            f"and copy the folder, or use a local source: {sorted(SOURCES)}."
        )
    features = builder.info.features
    image_key = _feature_of_type(name, features, tfds.features.Image)
    label_key = _feature_of_type(name, features, tfds.features.ClassLabel)
    if features[image_key].shape[:2].count(None):
        raise ValueError(
            f"TFDS data set {name!r} has images of varying shape {features[image_key].shape}; "
            "this source needs one shape. Export the images to a folder and use 'folder:PATH' "
            "with ImageFolder.image_size."
        )
    splits = builder.info.splits
    test_split = next((s for s in ("test", "validation") if s in splits), None)
    if "train" not in splits or test_split is None:
        raise ValueError(
            f"TFDS data set {name!r} has splits {sorted(splits)}; it needs 'train' and "
            "'test' (or 'validation')."
        )

    def load(split, data_dir=None):
        del data_dir  # Bound when the builder was made.
        ds = builder.as_dataset(split="train" if split == "train" else test_split, batch_size=-1)
        arrays = tfds.as_numpy(ds)
        return arrays[image_key].astype(np.uint8), arrays[label_key].astype(np.int32)

    labels = features[label_key]
    return load, labels.num_classes, tuple(labels.names)


def _feature_of_type(name, features, kind):
    """The key of the one top-level feature of type `kind`."""
    keys = [k for k, f in features.items() if isinstance(f, kind)]
    if len(keys) != 1:
        raise ValueError(
            f"TFDS data set {name!r} needs exactly one {kind.__name__} feature; it has "
            f"{ {k: type(f).__name__ for k, f in features.items()} }."
        )
    return keys[0]


@gin.configurable
class ImageClassificationData:
    """Train / held-out / test splits of a named image-classification source.

    The held-out split is carved deterministically from the training set and
    is what a reference model trains on; label noise touches only the train
    split. Every example keeps a stable id (its index in the source's split,
    test ids offset past the training ids).

    Args:
        name: A key of `SOURCES` ("fashion_mnist", "digits"); "folder:PATH" for
            a folder of images with one sub-folder per class
            (`active_keras.data.image_folder`; options as `ImageFolder.*`); or
            "tfds:NAME" for a TFDS data set already prepared on disk (under
            `data_dir`, else TFDS's default; never downloaded).
        label_noise: Fraction of training labels replaced by another class.
        heldout_size: Examples moved from train to the held-out split.
        train_size: If set, keep only this many training examples.
        seed: Seed of the held-out carve-out and the label noise.
        data_dir: Where the source's files are (default: its Debian package's
            folder; for TFDS, TFDS's data folder).
        curated_dir: Folder of `active_keras.curation.curate` output: its kept examples
            replace the train split (ids, labels and noise flags as curated;
            curate with the same name, seed and heldout_size).
        cap_sizes: Read `heldout_size` as an upper bound: a smaller source
            gives a fifth of its training examples to the held-out split
            instead of failing (`gin/local.gin` sets it, so that `--local`
            smoke-runs any folder). `train_size` is always an upper bound.
        validation_size: Examples carved from the end of the training pool
            (after the held-out split, before `train_size` is applied) into a
            "validation" split, with the same label noise as train (a user's
            validation data is as noisy as the rest). Runs evaluate on it
            beside test, so that configurations are picked on validation and
            reported on test. The train split is what it would be without a
            validation split whenever `train_size` leaves that many unused.
        heldout_limit: Use only the first this many held-out examples (a
            smaller clean set); the carve-out, and so the train split, stay as
            with the full `heldout_size`.
        train_with_heldout: Append the (limited) held-out split, clean labels
            and all, to the train split: the uniform baseline that gets every
            labelled example a reference trained on held-out data saw.

    Attributes:
        skipped: Files of a folder source skipped as undecodable (`{"corrupt": n}`;
            empty for the other sources).
    """

    def __init__(
        self,
        name="fashion_mnist",
        label_noise=0.0,
        heldout_size=10000,
        train_size=None,
        seed=0,
        data_dir=None,
        curated_dir=None,
        cap_sizes=False,
        validation_size=0,
        heldout_limit=None,
        train_with_heldout=False,
    ):
        self.skipped = {}
        if name.startswith("tfds:"):
            loader, self.num_classes, self.class_names = _tfds_source(
                name[len("tfds:") :], data_dir
            )
        elif name.startswith(image_folder.PREFIX):
            folder = image_folder.ImageFolder(name[len(image_folder.PREFIX) :])
            loader, self.num_classes, self.class_names = (
                folder.load,
                folder.num_classes,
                folder.class_names,
            )
            self.skipped = folder.skipped
        elif name in SOURCES:
            loader, self.num_classes, self.class_names = SOURCES[name]
        else:
            raise ValueError(
                f"Unknown data set {name!r}; available: {sorted(SOURCES)}, 'folder:PATH' for a "
                "folder with one sub-folder of images per class, or 'tfds:NAME' for a locally "
                "prepared TFDS data set."
            )
        self.name = name
        kwargs = {"data_dir": data_dir} if data_dir else {}
        images, labels = loader("train", **kwargs)
        test_images, test_labels = loader("test", **kwargs)
        for arr in (labels, test_labels):
            validation.check_labels(arr, self.num_classes)
        if cap_sizes:
            heldout_size = min(heldout_size, len(labels) // 5)
        if not 0 <= heldout_size < len(labels):
            raise ValueError(f"heldout_size={heldout_size} must be in [0, {len(labels)}).")
        if not 0 <= validation_size < len(labels) - heldout_size:
            raise ValueError(
                f"validation_size={validation_size} must be in [0, {len(labels) - heldout_size}) "
                f"(the {len(labels)} training examples less heldout_size={heldout_size})."
            )
        if heldout_limit is not None and not 0 < heldout_limit <= heldout_size:
            raise ValueError(f"heldout_limit={heldout_limit} must be in [1, {heldout_size}].")
        order = np.random.default_rng(seed).permutation(len(labels))
        held, train = order[:heldout_size], order[heldout_size:]
        # From the end of the pool: a train_size that leaves it unused keeps its train split.
        cut = len(train) - validation_size
        train, valid = train[:cut], train[cut:]
        if train_size is not None:
            train = train[:train_size]
        held = held[:heldout_limit]
        noisy, corrupted = corrupt_labels(
            labels[train], label_noise, self.num_classes, seed=seed + 1
        )
        self.label_noise = label_noise
        self.input_shape = tuple(images.shape[1:])
        clean_held = Split(
            images[held], labels[held], np.zeros(len(held), bool), held.astype(np.int64)
        )
        train_split = Split(images[train], noisy, corrupted, train.astype(np.int64))
        if train_with_heldout:
            train_split = _concat(train_split, clean_held)
        self.splits = {
            "train": train_split,
            "heldout": clean_held,
            "test": Split(
                test_images,
                test_labels,
                np.zeros(len(test_labels), bool),
                np.arange(len(test_labels), dtype=np.int64) + len(labels),
            ),
        }
        if validation_size:
            v_noisy, v_corrupted = corrupt_labels(
                labels[valid], label_noise, self.num_classes, seed=seed + 2
            )
            self.splits["validation"] = Split(
                images[valid], v_noisy, v_corrupted, valid.astype(np.int64)
            )
        if curated_dir:
            self.splits["train"] = self._curated_split(curated_dir)
        self.fold_seed = seed + 3

    def split(self, name):
        """The split `name`: a key of `splits`, or "train_fold0" / "train_fold1".

        The two folds are a seeded half each of the train split (cross-fitting:
        a reference trained on one half scores the other, so no held-out data
        is needed; `active_keras.train.train_reference`).
        """
        if name in self.splits:
            return self.splits[name]
        if name in CROSSFIT_FOLDS:
            train = self.splits["train"]
            order = np.random.default_rng(self.fold_seed).permutation(len(train))
            half = len(train) // 2
            mine = np.sort(order[:half] if name == CROSSFIT_FOLDS[0] else order[half:])
            return Split(*(a[mine] for a in _arrays(train)))
        raise ValueError(
            f"Unknown split {name!r}; {self.name!r} has {sorted(self.splits)} and the "
            f"cross-fit folds {list(CROSSFIT_FOLDS)}."
        )

    def _curated_split(self, curated_dir):
        images, labels, corrupted, ids = curated.load_split(curated_dir)
        if tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Curated images in {curated_dir!r} have shape {tuple(images.shape[1:])}; "
                f"{self.name!r} has {self.input_shape}."
            )
        validation.check_labels(labels, self.num_classes)
        return Split(images, labels, corrupted, ids)

    def dataset(
        self,
        split,
        batch_size,
        *,
        shuffle=False,
        repeat=False,
        seed=0,
        drop_remainder=None,
        start_batch=0,
    ):
        """A `tf.data.Dataset` of `(image float32 in [0, 1], label, metadata)` batches.

        With `shuffle` and `repeat` (training), the order is a pure function of
        `(seed, position)`: example `i` of the endless stream is entry
        `index_shuffle(i % N, seed=(seed, i // N))` of the split, a fresh
        permutation for every pass. Batch `s` therefore does not depend on how
        the stream was read before, and `start_batch=s` starts there at no cost
        (how a resumed run continues exactly).

        Args:
            split: "train", "heldout", "test", "validation" (if carved) or a
                cross-fit fold (`split`).
            batch_size: Examples per batch (a super-batch when training actively).
            shuffle: Reshuffle every pass, seeded.
            repeat: Repeat forever.
            seed: Shuffle seed.
            drop_remainder: Defaults to `repeat` (training needs static shapes).
            start_batch: Index of the first batch to give.
        """
        data = self.split(split)
        if shuffle and repeat:
            ds = self._stateless_stream(data, batch_size, seed, start_batch)
        else:
            ds = tf.data.Dataset.from_tensor_slices(
                (data.images, data.labels, {"corrupted": data.corrupted, "example_id": data.ids})
            )
            if shuffle:
                ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
            if repeat:
                ds = ds.repeat()
            ds = ds.batch(
                batch_size, drop_remainder=repeat if drop_remainder is None else drop_remainder
            )
            if start_batch:
                ds = ds.skip(start_batch)
        ds = ds.map(
            lambda x, y, m: (pixels.to_unit(x), y, m),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    @staticmethod
    def _stateless_stream(data, batch_size, seed, start_batch):
        """Endless shuffled batches; batch `s` is a function of `(seed, s)` alone."""
        n = len(data)
        images, labels = tf.constant(data.images), tf.constant(data.labels)
        corrupted, ids = tf.constant(data.corrupted), tf.constant(data.ids)

        def batch(step):
            position = step * batch_size + tf.range(batch_size, dtype=tf.int64)
            passes = position // n
            # One permutation per pass over the data, keyed by (seed, pass). The raw
            # op: `tf.random.experimental.index_shuffle` mis-pads `[n, 2]` seeds.
            seeds = tf.stack([tf.fill([batch_size], tf.cast(seed, tf.int64)), passes], axis=1)
            seeds = tf.pad(seeds, [[0, 0], [0, 1]])
            index = tf.raw_ops.RandomIndexShuffle(
                index=position % n, seed=seeds, max_index=tf.constant(n - 1, tf.int64), rounds=4
            )
            return (
                tf.gather(images, index),
                tf.gather(labels, index),
                {"corrupted": tf.gather(corrupted, index), "example_id": tf.gather(ids, index)},
            )

        ds = tf.data.Dataset.range(start_batch, tf.int64.max)
        return ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def train_dataset(self, batch_size, seed=0):
        return self.dataset("train", batch_size, shuffle=True, repeat=True, seed=seed)
