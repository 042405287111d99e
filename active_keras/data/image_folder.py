"""Your own images: a folder with one sub-folder per class, for `ImageClassificationData`.

Select it with `ImageClassificationData.name = 'folder:PATH'`. Two layouts:

- `PATH/<class>/<image>`: a seeded `test_fraction` of every class becomes the
  test split (by a hash of the file's path, so adding files moves no others);
- `PATH/train/<class>/<image>` and `PATH/test/<class>/<image>`: the given split.

Classes are the sub-folder names in sorted order (label `i` is the `i`-th
name, as in `keras.utils.image_dataset_from_directory`), images may sit in
nested folders below their class, and the file types are Keras' (`EXTENSIONS`);
other files are ignored. Files are listed with `tf.io.gfile` (local or `gs://`)
and decoded with `tf.io.decode_image` in `tf.data`; a file that fails to decode
is skipped, counted in `skipped` and named in a warning. All images must have
one shape unless `image_size` resizes them; held as uint8 arrays like the
built-in sets, the held-out split, label noise and example ids then come from
`ImageClassificationData`.

Example (gin):

```
ImageClassificationData.name = 'folder:/data/my_images'
ImageFolder.image_size = 32  # Only if the images differ in size.
```
"""

import os

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from active_keras.data import openclipart

PREFIX = "folder:"
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # Those Keras' image utilities read.


def _image_files(folder):
    """Sorted image files anywhere below `folder`."""
    found = []
    for dirpath, _, filenames in tf.io.gfile.walk(folder):
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(EXTENSIONS)]
    return sorted(found)


def _class_folders(folder):
    return sorted(
        d.rstrip("/")
        for d in tf.io.gfile.listdir(folder)
        if tf.io.gfile.isdir(os.path.join(folder, d))
    )


@gin.configurable
class ImageFolder:
    """The train and test splits of an image folder, decoded and validated.

    Args:
        root: The folder (see the module docstring for its layouts).
        image_size: If set, every image is resized to `image_size` x
            `image_size` (bilinear, antialiased); otherwise all must share one shape.
        channels: 1 (grey) or 3 (RGB) to convert every image; None keeps the
            files' own (which must then agree).
        test_fraction: Fraction of each class held out for testing (only for the
            layout without `train/` and `test/` sub-folders).
        seed: Seed of that test carve-out.

    Attributes:
        class_names: Sorted class (sub-folder) names.
        skipped: `{"corrupt": n}`, files that could not be decoded.
        skipped_paths: `{"corrupt": [paths]}`.

    Raises:
        FileNotFoundError: `root` is not a folder.
        ValueError: no class folders or images, a test class that training lacks,
            or images of different shapes (naming a file of each).
    """

    def __init__(self, root, image_size=None, channels=None, test_fraction=0.2, seed=0):
        if not tf.io.gfile.isdir(root):
            raise FileNotFoundError(f"Image folder {root!r} does not exist (from 'folder:{root}').")
        self.root = root
        self.image_size = image_size
        self.channels = channels
        split_dirs = [os.path.join(root, s) for s in ("train", "test")]
        if all(tf.io.gfile.isdir(d) for d in split_dirs):
            files = {"train": self._labelled(split_dirs[0]), "test": self._labelled(split_dirs[1])}
            self.class_names = tuple(sorted({c for c, _ in files["train"]}))
            unknown = sorted({c for c, _ in files["test"]} - set(self.class_names))
            if unknown:
                raise ValueError(
                    f"{split_dirs[1]} has class folders {unknown} that {split_dirs[0]} lacks: "
                    "every test class needs training images."
                )
        else:
            labelled = self._labelled(root)
            self.class_names = tuple(sorted({c for c, _ in labelled}))
            files = {"train": [], "test": []}
            for c, path in labelled:
                key = os.path.relpath(path, root)
                files[openclipart.split_of(key, seed, 0.0, test_fraction)].append((c, path))
        self.num_classes = len(self.class_names)
        index = {name: i for i, name in enumerate(self.class_names)}
        self.skipped_paths = {"corrupt": []}
        self._splits = {}
        for split, pairs in files.items():
            labels = np.array([index[c] for c, _ in pairs], np.int32)
            images, ok = self._decode([p for _, p in pairs])
            self._splits[split] = (images, labels[ok])
        self.skipped = {k: len(v) for k, v in self.skipped_paths.items()}
        if self.skipped["corrupt"]:
            logging.warning(
                "Skipped %d image file(s) in %s that could not be decoded, e.g. %s.",
                self.skipped["corrupt"],
                root,
                self.skipped_paths["corrupt"][0],
            )

    def _labelled(self, folder):
        """`[(class name, path)]` of the images below `folder`'s class sub-folders."""
        classes = _class_folders(folder)
        pairs = [(c, p) for c in classes for p in _image_files(os.path.join(folder, c))]
        if not pairs:
            raise ValueError(
                f"No images ({', '.join(EXTENSIONS)}) in class sub-folders of {folder!r} "
                f"(found sub-folders: {classes or 'none'}). Expected {folder}/<class>/<image>."
            )
        return pairs

    def _decode(self, paths):
        """uint8 images of `paths` and the indices of those that decoded."""
        if not paths:
            raise ValueError(
                f"A split of {self.root!r} has no images: add more per class, raise "
                "ImageFolder.test_fraction, or give train/ and test/ sub-folders."
            )

        def load(i, path):
            image = tf.io.decode_image(
                tf.io.read_file(path), channels=self.channels or 0, expand_animations=False
            )
            if self.image_size:
                size = [self.image_size, self.image_size]
                image = tf.image.resize(image, size, antialias=True)
                image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
            return i, image

        ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ok, images = [], []
        for i, image in ds.ignore_errors():
            i = int(i)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"{paths[i]} has shape {tuple(image.shape)}; {paths[ok[0]]} has "
                    f"{tuple(images[0].shape)}. Bind ImageFolder.image_size (and "
                    "ImageFolder.channels) to convert every image to one shape."
                )
            ok.append(i)
            images.append(image.numpy())
        decoded = set(ok)
        self.skipped_paths["corrupt"] += [p for i, p in enumerate(paths) if i not in decoded]
        if not images:
            raise ValueError(f"None of the {len(paths)} image files in {self.root!r} decoded.")
        return np.stack(images), np.array(ok, np.int64)

    def load(self, split, data_dir=None):
        """`(images uint8 [N, H, W, C], labels int32 [N])` of "train" or "test"."""
        del data_dir  # The folder is the name's PATH.
        return self._splits[split]
