"""Open Clip Art as an image-caption data set (Debian package `openclipart-png`), and
`ImageTextFolder`: the same for a folder of your own images and captions.

Files live under `/usr/share/openclipart/png/<category>/<subcategory...>/<title>.png`.
A caption is made from the path: the category, the subcategory words and the
title words, with the extension, the trailing numbering (`_01`, `Pinguino1`)
and the separators removed. Real noise stays (author names, Italian titles).
The zero-shot label is the top-level category.

Scanning validates every file once with PIL (`verify()` reads all chunks, so a
truncated PNG or a non-image fails) and skips, and counts, the corrupt ones and
the huge ones (some files here are over 600 megapixels: decoding one would take
gigabytes). Images are then decoded in `tf.data`: alpha composited over white,
padded to square with white, resized to `image_size`.

Splits are deterministic: a hash of the file's path (its target, for symbolic
links) and the seed picks train / heldout / test.

`ImageTextFolder` reads any folder laid out the same way
(`<root>/<category>/.../<image>`), PNG, JPEG, GIF or BMP, with a caption file
beside an image (`x.png` + `x.txt`) taking the place of the caption made from
its path. The category (first folder) is still the zero-shot class.

Example:

```python
from active_keras.data import openclipart
from active_keras.text import tokenizer

data = openclipart.OpenClipArt(image_size=64)
tok = tokenizer.load_or_learn(model_dir, data.captions("train"))
for x, y, meta in data.dataset("train", tok, batch_size=256).take(1):
    print(x["image"].shape, x["tokens"].shape, y[:4], data.skipped)
```
"""

import dataclasses
import hashlib
import json
import os
import re
import warnings

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from active_keras import files
from active_keras.data import pixels
from active_keras.data.errors import MissingDataError

ROOT = "/usr/share/openclipart/png"
SPLITS = ("train", "heldout", "test")
PROMPT = "a clip art of {}"
CAPTION_SUFFIX = ".txt"  # `x.txt` beside `x.png` holds that image's caption.
ID_STRIDE = 10**6  # Example ids: `index + SPLITS.index(split) * ID_STRIDE`.


def example_ids(split, n):
    """int64 ids of the `n` examples of `split`: their index, offset by the split."""
    if n >= ID_STRIDE:
        raise ValueError(f"{n} examples in split {split!r}: ids allow fewer than {ID_STRIDE}.")
    return np.arange(n, dtype=np.int64) + SPLITS.index(split) * ID_STRIDE


def split_and_index(ids):
    """`(splits, indices)` of example ids (the inverse of `example_ids`)."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    return [SPLITS[i] for i in ids // ID_STRIDE], ids % ID_STRIDE


@dataclasses.dataclass(frozen=True)
class Example:
    """One image-caption pair.

    Attributes:
        path: Absolute file path.
        caption: Noisy caption made from the path.
        category: Top-level category (the zero-shot class).
        split: `"train"`, `"heldout"` or `"test"`.
    """

    path: str
    caption: str
    category: str
    split: str


def _words(text):
    # Separators and punctuation become spaces; camelCase is left alone
    # (WordPiece lower-cases anyway).
    return re.sub(r"[^0-9a-zA-Z]+", " ", text).lower().split()


def _strip_numbering(words):
    """Drops trailing all-digit words and digits glued to the last word (`pinguino1`)."""
    words = list(words)
    while words and words[-1].isdigit():
        words.pop()
    if words:
        stripped = re.sub(r"\d+$", "", words[-1])
        if stripped.isalpha():  # `pinguino1` -> `pinguino`, but `70a021` (a colour) stays.
            words[-1] = stripped
    return words


def relative_parts(path, root=ROOT):
    """`(folders, title)` of `path` under `root`: folders from the category down."""
    rel = os.path.relpath(path, root)
    *folders, filename = rel.split(os.sep)
    return folders, os.path.splitext(filename)[0]


def category_of(path, root=ROOT):
    """The top-level category folder of `path`."""
    folders, _ = relative_parts(path, root)
    if not folders:
        raise ValueError(f"{path} is not inside a category folder of {root}.")
    return folders[0]


def caption(path, root=ROOT, style="full"):
    """The caption of an image file.

    Args:
        path: File path under `root`.
        root: The Open Clip Art PNG folder.
        style: `"full"` (category, subcategories, title) or `"category"` (the
            cleaner caption: category words only, for the reference model).

    Example: `signs_and_symbols/flags/europe/germany/germany_saxony.png` ->
    `"signs and symbols flags europe germany germany saxony"`.
    """
    folders, title = relative_parts(path, root)
    if style == "category":
        return " ".join(_words(folders[0]))
    if style != "full":
        raise ValueError(f"Unknown caption style {style!r}; choose 'full' or 'category'.")
    words = [w for folder in folders for w in _words(folder)]
    return " ".join(words + _strip_numbering(_words(title)))


def split_of(key, seed=0, heldout_fraction=0.1, test_fraction=0.1):
    """Deterministic split of the file identified by `key` (a relative path)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + heldout_fraction:
        return "heldout"
    return "train"


def check_image(path, max_pixels, formats=("PNG",)):
    """`None` if `path` is a readable image (of `formats`) of at most `max_pixels`, else why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format not in formats:
                    return "corrupt"
                if image.size[0] * image.size[1] > max_pixels:
                    return "too_large"
                if image.format == "PNG":
                    image.verify()  # Reads every chunk and its CRC: catches truncation.
                else:
                    image.load()  # Other formats: decode it all (a truncated JPEG fails).
    except Image.DecompressionBombError:
        return "too_large"
    except Exception:  # noqa: BLE001 - any failure to read means unusable.
        return "corrupt"
    return None


def caption_from_file(path):
    """The text of `path`'s caption file (`x.txt` beside `x.png`), or None if none or empty."""
    text_path = os.path.splitext(path)[0] + CAPTION_SUFFIX
    if not os.path.isfile(text_path):
        return None
    try:
        with open(text_path, encoding="utf-8") as f:
            return " ".join(f.read().split()) or None
    except UnicodeDecodeError as e:
        raise ValueError(
            f"The caption file {text_path!r} is not UTF-8 text ({e.reason} at byte {e.start}); "
            "save it as UTF-8."
        ) from None


def scan(
    root=ROOT,
    include_links=False,
    max_pixels=4_000_000,
    seed=0,
    heldout_fraction=0.1,
    test_fraction=0.1,
    formats=("PNG",),
):
    """Lists and validates the data set.

    Args:
        root: The Open Clip Art PNG folder.
        include_links: Also list symbolic links (about 1,200 files here link an
            image into a second category). They share their target's split, so
            no image is both in train and test.
        max_pixels: Larger images are skipped (counted as `too_large`).
        seed: Split seed.
        heldout_fraction: Fraction of files in the held-out split.
        test_fraction: Fraction of files in the test split.
        formats: PIL format names accepted as images; other files are corrupt.
            Caption files (`CAPTION_SUFFIX`) are not images.

    Returns:
        `(examples, skipped)`: a sorted list of `Example`, and a dict
        `{"corrupt": [paths], "too_large": [paths]}`.

    Raises:
        MissingDataError: `root` does not exist.
    """
    if not os.path.isdir(root):
        raise MissingDataError("Open Clip Art", root, "openclipart-png")
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    examples, skipped = [], {"corrupt": [], "too_large": []}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if dirpath == root:
            continue  # Files outside any category have no label.
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            if (os.path.islink(path) and not include_links) or filename.endswith(CAPTION_SUFFIX):
                continue
            reason = check_image(path, max_pixels, formats)
            if reason:
                skipped[reason].append(path)
                continue
            key = os.path.relpath(os.path.realpath(path), real_root)
            split = split_of(key, seed, heldout_fraction, test_fraction)
            text = caption_from_file(path) or caption(path, root)
            examples.append(Example(path, text, category_of(path, root), split))
    return examples, skipped


def _atomic_save(path, write):
    """Writes `path` through a temporary file, so concurrent runs never read half a file."""
    with files.atomic_file(path, "wb") as f:
        write(f)


def _cached_scan(cache_dir, root, *args):
    """`scan(root, *args)`, saved in `cache_dir` keyed by its arguments and the file listing."""
    if not os.path.isdir(root):
        raise MissingDataError("Open Clip Art", root, "openclipart-png")
    listing = []  # Names, sizes and times: any change to the files misses the cache.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            listing.append(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256(repr((os.path.abspath(root), args, listing)).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"scan_{key}.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        return [Example(**e) for e in saved["examples"]], saved["skipped"]
    examples, skipped = scan(root, *args)
    payload = {"examples": [dataclasses.asdict(e) for e in examples], "skipped": skipped}
    _atomic_save(path, lambda f: f.write(json.dumps(payload).encode()))
    return examples, skipped


def decode_image(image_bytes, image_size=64):
    """Decodes image bytes to float32 `[image_size, image_size, 3]` in `[0, 1]`.

    PNG transparency is composited over white, and the image is padded to a
    square with white (keeping its aspect ratio) before resizing. JPEG, GIF and
    BMP are read as RGB. Works in `tf.data`.
    """

    def other():
        rgb = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        return tf.pad(rgb, [[0, 0], [0, 0], [0, 1]], constant_values=255)  # Opaque.

    is_png = tf.strings.substr(image_bytes, 0, 8) == b"\x89PNG\r\n\x1a\n"
    rgba = tf.cond(is_png, lambda: tf.io.decode_png(image_bytes, channels=4, dtype=tf.uint8), other)
    rgba = pixels.to_unit(rgba)
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    rgb = rgb * alpha + (1.0 - alpha)
    # resize_with_pad pads with zeros: pad the "ink" (1 - rgb) so padding is white.
    ink = tf.image.resize_with_pad(1.0 - rgb, image_size, image_size, antialias=True)
    return tf.clip_by_value(1.0 - ink, 0.0, 1.0)


@gin.configurable
class OpenClipArt:
    """Train / heldout / test image-caption splits of Open Clip Art.

    Args:
        root: The Open Clip Art PNG folder.
        image_size: Side of the decoded square images.
        include_links: See `scan`.
        max_pixels: See `scan`.
        seed: Split seed.
        heldout_fraction: Fraction of files held out (for the reference model).
        test_fraction: Fraction of files for evaluation.
        cache_dir: Where the scan and the decoded images (uint8, one file per
            split and image size) are saved and reused by later runs:
            validating and decoding every PNG takes about a minute. `"user"`
            (default): `$XDG_CACHE_HOME/active_keras/<name>`, else
            `~/.cache/active_keras/<name>`; None: no cache. A folder of another
            user, or one anyone can write to, is refused (it could hold
            planted files).

    Attributes:
        class_names: Sorted top-level categories (zero-shot classes).
        skipped: `{"corrupt": n, "too_large": n}`, files skipped while scanning.
    """

    formats = ("PNG",)  # PIL format names of the images read.
    cache_name = "openclipart"  # Its folder in the user's cache.

    def __init__(
        self,
        root=ROOT,
        image_size=64,
        include_links=False,
        max_pixels=4_000_000,
        seed=0,
        heldout_fraction=0.1,
        test_fraction=0.1,
        cache_dir="user",
    ):
        self.root = root
        self.image_size = int(image_size)
        if cache_dir == "user":
            cache_dir = files.cache_dir(type(self).cache_name)
        elif cache_dir:
            cache_dir = files.private_dir(cache_dir)
        self.cache_dir = cache_dir
        scan_args = (root, include_links, max_pixels, seed, heldout_fraction, test_fraction)
        if self.formats != OpenClipArt.formats:  # Open Clip Art's cache keys stay as they were.
            scan_args += (self.formats,)
        self._examples, skipped = (
            _cached_scan(cache_dir, *scan_args) if cache_dir else scan(*scan_args)
        )
        if not self._examples:
            raise ValueError(
                f"No readable images ({', '.join(self.formats)}) in category folders under "
                f"{root} (expected {root}/<category>/<image>)."
            )
        self.skipped_paths = skipped
        self.skipped = {reason: len(paths) for reason, paths in skipped.items()}
        if self.num_skipped:
            logging.warning(
                "Skipped %s image file(s) under %s, e.g. %s.",
                self.skipped,
                root,
                next(p for paths in skipped.values() for p in paths),
            )
        self.class_names = tuple(sorted({e.category for e in self._examples}))
        self.num_classes = len(self.class_names)

    @property
    def num_skipped(self):
        return sum(self.skipped.values())

    def examples(self, split):
        """The `Example`s of `split`, in a fixed order."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; choose from {SPLITS}.")
        return [e for e in self._examples if e.split == split]

    def captions(self, split, style="full"):
        """Captions of `split` (`style="category"` for the cleaner, category-only ones)."""
        if style == "full":  # From the path, or the image's caption file.
            return [e.caption for e in self.examples(split)]
        return [caption(e.path, self.root, style) for e in self.examples(split)]

    def captions_of(self, ids):
        """The ("full") captions of examples given by their ids (see `dataset`)."""
        splits, indices = split_and_index(ids)
        captions = {split: self.captions(split) for split in set(splits)}
        return [captions[s][i] for s, i in zip(splits, indices, strict=True)]

    def labels(self, split):
        """int32 category indices of `split` into `class_names`."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[e.category] for e in self.examples(split)], np.int32)

    def prompts(self, template=PROMPT):
        """One zero-shot prompt per class, e.g. `"a clip art of signs and symbols"`."""
        return [template.format(" ".join(_words(name))) for name in self.class_names]

    def decoded_images(self, split):
        """uint8 `[N, S, S, 3]` images of `split`, read from / written to `cache_dir`."""
        examples = self.examples(split)
        key = hashlib.sha256(
            "\n".join([str(self.image_size)] + [e.path for e in examples]).encode()
        ).hexdigest()[:16]
        path = os.path.join(self.cache_dir, f"images_{split}_{self.image_size}px_{key}.npy")
        if os.path.exists(path):
            return np.load(path)
        ds = tf.data.Dataset.from_tensor_slices([e.path for e in examples])
        ds = ds.map(
            lambda p: tf.cast(
                tf.round(decode_image(tf.io.read_file(p), self.image_size) * 255.0), tf.uint8
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        images = np.concatenate([b.numpy() for b in ds.batch(256)])
        _atomic_save(path, lambda f: np.save(f, images))
        return images

    def dataset(
        self,
        split,
        tokenizer,
        batch_size,
        shuffle=None,
        repeat=None,
        caption_style="full",
        drop_remainder=None,
        cache=True,
        seed=0,
        start_batch=0,
    ):
        """A `tf.data.Dataset` of `({"image", "tokens"}, label, {"example_id"})` batches.

        Args:
            split: `"train"`, `"heldout"` or `"test"`.
            tokenizer: A callable strings `[N]` -> int32 `[N, L]` (a `CaptionTokenizer`).
            batch_size: Batch (super-batch) size.
            shuffle: Shuffle each epoch; defaults to True except for `"test"`.
            repeat: Repeat forever; defaults to True except for `"test"`.
            caption_style: `"full"` or `"category"` captions.
            drop_remainder: Defaults to True except for `"test"` (selection
                needs a static super-batch size).
            cache: Keep decoded images after the first epoch: True in memory, a
                file path to cache them on disk for later runs, False not at all.
                Ignored with `cache_dir` (images are then decoded ahead, once).
            seed: Shuffle seed.
            start_batch: Index of the first batch to give (the seeded stream
                is read up to there: how a resumed run continues exactly).

        Returns:
            Batches of images float32 `[B, S, S, 3]` in `[0, 1]`, tokens int32
            `[B, L]`, labels int32 `[B]` (category) and example ids int64 `[B]`
            (the example's index in `examples(split)`, offset by the split).
        """
        evaluating = split == "test"
        shuffle = not evaluating if shuffle is None else shuffle
        repeat = not evaluating if repeat is None else repeat
        drop_remainder = not evaluating if drop_remainder is None else drop_remainder
        examples = self.examples(split)
        # Tokenise all captions once: cheap, and keeps the pipeline deterministic.
        tokens = np.asarray(tokenizer(self.captions(split, caption_style)), np.int32)
        ids = example_ids(split, len(examples))
        if self.cache_dir:
            # Decoded once (on disk), held in memory: no per-epoch PNG decoding.
            ds = tf.data.Dataset.from_tensor_slices(
                (self.decoded_images(split), tokens, self.labels(split), ids)
            )
            ds = ds.map(
                lambda image, tok, label, example_id: (
                    pixels.to_unit(image),
                    tok,
                    label,
                    example_id,
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            ds = tf.data.Dataset.from_tensor_slices(
                ([e.path for e in examples], tokens, self.labels(split), ids)
            )
            size = self.image_size

            def load(path, tok, label, example_id):
                image = decode_image(tf.io.read_file(path), size)
                return image, tok, label, example_id

            ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
            if cache:
                ds = ds.cache(cache if isinstance(cache, str) else "")
        if shuffle:
            ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if start_batch:
            ds = ds.skip(start_batch)
        ds = ds.map(
            lambda image, tok, label, example_id: (
                {"image": image, "tokens": tok},
                label,
                {"example_id": example_id},
            )
        )
        return ds.prefetch(tf.data.AUTOTUNE)


@gin.configurable
class ImageTextFolder(OpenClipArt):
    """Your own image-caption pairs, in the layout of Open Clip Art.

    `root/<category>/.../<name>.<png|jpg|jpeg|gif|bmp>`, each image with an
    optional caption file `root/<category>/.../<name>.txt`; an image without
    one gets the caption made from its path (category, sub-folder and file
    name words, as for Open Clip Art). The category is the zero-shot class,
    so give at least two. Every other behaviour (validation, splits, ids,
    caching) is `OpenClipArt`'s.

    Args:
        root: The folder.
        **options: `OpenClipArt`'s other arguments (`image_size`, `seed`,
            `heldout_fraction`, `test_fraction`, `cache_dir`, ...). Those not
            given here or bound as `ImageTextFolder.*` fall back to their
            `OpenClipArt.*` bindings, so a config for Open Clip Art (such as
            gin/activeclip.gin) applies as it is.
    """

    formats = ("PNG", "JPEG", "GIF", "BMP")
    cache_name = "image_text"

    def __init__(self, root, **options):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"Image-text folder {root!r} does not exist.")
        super().__init__(root, **options)
