"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (or a local TFDS copy).

Nothing is downloaded: the IDX files come from
`/usr/share/datasets/fashion-mnist/`, and TFDS is read only where a prepared
copy of `fashion_mnist` already exists.
"""

import glob
import os

import numpy as np

from active_keras.data import idx
from active_keras.data.errors import MissingDataError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_debian(split, data_dir=DEFAULT_DIR):
    """Returns `(images uint8 [N, 28, 28, 1], labels int32 [N])` of `split` ("train" or "test")."""
    if split not in _FILES:
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; choose 'train' or 'test'.")
    paths = [os.path.join(data_dir, name) for name in _FILES[split]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise MissingDataError("Fashion-MNIST", missing[0], DEBIAN_PACKAGE)
    images, labels = (idx.read_idx(p) for p in paths)
    return images[..., None], labels.astype(np.int32)


def load_tfds(split, data_dir=None):
    """The same arrays from a locally prepared TFDS `fashion_mnist` (never downloads)."""
    import tensorflow_datasets as tfds

    ds = tfds.load(
        "fashion_mnist",
        split=split,
        data_dir=data_dir,
        download=False,
        batch_size=-1,
        as_supervised=True,
    )
    images, labels = tfds.as_numpy(ds)
    return images.astype(np.uint8), labels.astype(np.int32)


def tfds_available(data_dir=None):
    """Whether a prepared TFDS `fashion_mnist` exists (checked on disk, touching nothing)."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))
    return bool(glob.glob(os.path.join(root, "fashion_mnist", "*", "dataset_info.json")))


def load(split, source="auto", data_dir=None):
    """Loads a split from `source`: "debian", "tfds", or "auto" (TFDS if prepared, else Debian)."""
    if source == "tfds" or (source == "auto" and data_dir is None and tfds_available()):
        return load_tfds(split)
    if source in ("debian", "auto"):
        return load_debian(split, data_dir or DEFAULT_DIR)
    raise ValueError(f"Unknown Fashion-MNIST source {source!r}; choose auto, debian or tfds.")
