"""Writers of small "own data" folders and a TFDS builder, for the tests of those sources.

The images are real: Fashion-MNIST test images from the Debian package, saved
as PNG and JPEG files the way a user's folder would hold them.
"""

import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from active_keras.data import fashion_mnist

CLASSES = ("T-shirt", "Trouser", "Bag")  # Fashion-MNIST classes 0, 1 and 8.
_LABELS = (0, 1, 8)


def fashion_images(per_class):
    """`{class name: uint8 [per_class, 28, 28]}` of real Fashion-MNIST test images."""
    images, labels = fashion_mnist.load_debian("test")
    return {
        name: images[labels == label][:per_class, ..., 0]
        for name, label in zip(CLASSES, _LABELS, strict=True)
    }


def write_corrupt_png(path):
    """A PNG cut short: its header is right, its data is missing."""
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def class_folder(root, per_class=10, corrupt=True, split_layout=False):
    """Writes `root/<class>/<i>.png` (or `root/{train,test}/<class>/...`).

    With `corrupt`, `root/Bag/broken.png` (or under train/) is a truncated
    PNG, and a `README.txt` sits beside the images (not an image: ignored).

    Returns:
        `{class name: uint8 [per_class, 28, 28]}`, the images written.
    """
    images = fashion_images(per_class)
    for name, pixels in images.items():
        for i, image in enumerate(pixels):
            split = ("test" if i % 4 == 0 else "train") if split_layout else ""
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{name.lower()}_{i:03d}.png"))
    if corrupt:
        bag = os.path.join(root, "train" if split_layout else "", "Bag")
        write_corrupt_png(os.path.join(bag, "broken.png"))
        with open(os.path.join(bag, "README.txt"), "w") as f:
            f.write("Photos of bags.\n")
    return images


def image_text_folder(root, per_class=12, corrupt=True):
    """Writes captioned images: `root/<class>/<i>.png|.jpg`, most with a caption `<i>.txt`.

    Every third image has no caption file (its caption comes from its path);
    the others' captions name the class and the image's index. JPEG and PNG
    files alternate, in RGB.

    Returns:
        `{path: caption file text or None}` of the images written.
    """
    written = {}
    for name, pixels in fashion_images(per_class).items():
        folder = os.path.join(root, name.lower(), "studio shots")
        os.makedirs(folder, exist_ok=True)
        for i, image in enumerate(pixels):
            ext = ".jpg" if i % 2 else ".png"
            path = os.path.join(folder, f"{name.lower()}_photo_{i:02d}{ext}")
            Image.fromarray(np.repeat(image[..., None], 3, -1)).save(path)
            text = None
            if i % 3:
                text = f"a grey {name.lower()} number {i} on black"
                with open(os.path.splitext(path)[0] + ".txt", "w") as f:
                    f.write(text + "\n")
            written[path] = text
    if corrupt:
        write_corrupt_png(os.path.join(root, "bag", "broken.png"))
    return written


class TinyFashion(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder over a folder written by `class_folder(..., split_layout=True)`.

    Prepared without download: the folder is its manual directory
    (`tfds.download.DownloadConfig(manual_dir=...)`). No supervised keys, so
    the `tfds:` source must find the image and label features itself.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Write the folder with `own_data.class_folder(split_layout=True)`."
    )

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(names=CLASSES),
                    "file_name": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {
            split: self._generate_examples(dl_manager.manual_dir / split)
            for split in ("train", "test")
        }

    def _generate_examples(self, folder):
        for label, name in enumerate(CLASSES):
            for path in sorted((folder / name).glob("*.png")):
                if path.name != "broken.png":
                    yield path.name, {"image": path, "label": label, "file_name": path.name}


def prepare_tiny_fashion(data_dir, source_dir, per_class=10):
    """Writes the source folder and prepares `tiny_fashion` in `data_dir`; returns the builder."""
    class_folder(source_dir, per_class=per_class, split_layout=True)
    builder = TinyFashion(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=source_dir)
    )
    return builder
