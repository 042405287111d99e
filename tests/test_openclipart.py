"""Open Clip Art: captions from real file names, splits, corrupt files, decoding."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import pathlib
import re
import unittest

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from active_keras.data import openclipart as oc
from active_keras.data.errors import MissingDataError

installed = unittest.skipIf(
    not os.path.isdir(oc.ROOT), "Debian package openclipart-png is not installed"
)

REAL_CAPTIONS = {
    "signs_and_symbols/flags/europe/germany/germany_saxony.png": "signs and symbols flags europe germany germany saxony",
    "special/patterns/pattern-arches-intersecting-1.png": "special patterns pattern arches intersecting",
    "plants/flowers/flower1_juliane_krug_01.png": "plants flowers flower1 juliane krug",
    "people/clothing/hats/hat_-_clothing_nicu_bucu_05.png": "people clothing hats hat clothing nicu bucu",
    "tools/forchettoni_da_grigliat_01.png": "tools forchettoni da grigliat",
    "unsorted/Traslocatore03.png": "unsorted traslocatore",
    "unsorted/Tacchino_di_Natale.png": "unsorted tacchino di natale",
}


def write_png(path, rgba):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(rgba, np.uint8), "RGBA").save(path)


def _folder(tmp_path):
    """Three good PNGs, a truncated PNG and a non-image file, in two categories."""
    red = np.zeros([4, 4, 4], np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    red[0, 0] = 0  # One fully transparent (black) pixel.
    write_png(tmp_path / "animals" / "cats" / "red_cat_nicu_01.png", red)
    write_png(tmp_path / "animals" / "blue_dog.png", np.full([6, 3, 4], 200))
    write_png(tmp_path / "food" / "gatto_rosso_2.png", np.full([5, 5, 4], 50))
    write_png(tmp_path / "food" / "big.png", np.full([40, 40, 4], 50))
    good = (tmp_path / "food" / "gatto_rosso_2.png").read_bytes()
    (tmp_path / "food" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "animals" / "notes.png").write_text("not an image")
    return tmp_path


@installed
class RealOpenClipArtTest(parameterized.TestCase, tf.test.TestCase):
    """The installed Debian package openclipart-png, scanned once for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.real = oc.OpenClipArt(include_links=True)

    @parameterized.named_parameters(
        (re.sub(r"\W+", "_", rel), rel, expected) for rel, expected in sorted(REAL_CAPTIONS.items())
    )
    def test_captions_of_real_files(self, rel, expected):
        path = os.path.join(oc.ROOT, rel)
        self.assertTrue(os.path.isfile(path))
        self.assertEqual(oc.caption(path), expected)
        self.assertEqual(oc.caption(path, style="category"), " ".join(rel.split("/")[0].split("_")))

    def test_real_splits_are_deterministic_and_sized(self):
        real = self.real
        again, _ = oc.scan(include_links=True)
        first = sorted((e.path, e.split) for s in oc.SPLITS for e in real.examples(s))
        self.assertEqual(sorted((e.path, e.split) for e in again), first)
        n = sum(len(real.examples(s)) for s in oc.SPLITS)
        self.assertGreater(n, 8000)  # About 8,100 files, the too-large ones skipped.
        for split in ("heldout", "test"):
            self.assertTrue(0.08 < len(real.examples(split)) / n < 0.12)
        # Some files here are hundreds of megapixels.
        self.assertGreater(real.skipped["too_large"], 0)
        self.assertIn("animals", real.class_names)
        self.assertEqual(real.num_classes, len(real.class_names))

    def test_links_share_their_target_split(self):
        real = self.real
        by_real_path = {}
        for split in oc.SPLITS:
            for e in real.examples(split):
                by_real_path.setdefault(os.path.realpath(e.path), set()).add(split)
        n = sum(len(real.examples(s)) for s in oc.SPLITS)
        self.assertLess(len(by_real_path), n - 1000)  # Over 1,000 entries are links to other files.
        self.assertTrue(all(len(splits) == 1 for splits in by_real_path.values()))

    def test_decode_real_files(self):
        paths = [os.path.join(oc.ROOT, rel) for rel in sorted(REAL_CAPTIONS)[:3]]
        ds = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: oc.decode_image(tf.io.read_file(p), 32)
        )
        for image in ds:
            self.assertEqual(image.shape, (32, 32, 3))
            self.assertTrue(
                0.0 <= float(tf.reduce_min(image)) <= float(tf.reduce_max(image)) <= 1.0
            )
            self.assertGreater(float(tf.math.reduce_std(image)), 0.01)  # Not blank.


class OpenClipArtTest(tf.test.TestCase):
    def test_split_of_depends_on_seed(self):
        keys = [f"cat/file_{i}.png" for i in range(200)]
        a = [oc.split_of(k, seed=0) for k in keys]
        self.assertEqual(a, [oc.split_of(k, seed=0) for k in keys])
        self.assertNotEqual(a, [oc.split_of(k, seed=1) for k in keys])
        self.assertEqual(set(a), set(oc.SPLITS))

    def test_missing_package_raises(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        with self.assertRaisesRegex(MissingDataError, "openclipart-png"):
            oc.OpenClipArt(root=str(tmp_dir / "nowhere"))


class FolderTest(tf.test.TestCase):
    """A small folder of good and bad PNGs, made afresh for each test."""

    def setUp(self):
        super().setUp()
        self.folder = _folder(pathlib.Path(self.get_temp_dir()))

    def test_corrupt_files_are_skipped_and_counted(self):
        folder = self.folder
        data = oc.OpenClipArt(
            root=str(folder), image_size=8, max_pixels=1000, heldout_fraction=0.0, test_fraction=0.0
        )
        self.assertEqual(data.skipped, {"corrupt": 2, "too_large": 1})
        self.assertEqual(data.num_skipped, 3)
        self.assertEqual(
            sorted(os.path.basename(p) for p in data.skipped_paths["corrupt"]),
            ["notes.png", "truncated.png"],
        )
        self.assertEqual(data.class_names, ("animals", "food"))
        self.assertEqual(
            sorted(data.captions("train")),
            ["animals blue dog", "animals cats red cat nicu", "food gatto rosso"],
        )
        self.assertEqual(
            sorted(data.captions("train", style="category")), ["animals", "animals", "food"]
        )

        def tokenizer(texts):
            return np.ones([len(texts), 4], np.int32)

        batches = list(
            data.dataset("train", tokenizer, batch_size=2, repeat=False, drop_remainder=False)
        )
        self.assertEqual(sum(len(y) for _, y, _ in batches), 3)  # Every good file, no crash.
        x, y, meta = batches[0]
        self.assertEqual(x["image"].shape, (2, 8, 8, 3))
        self.assertEqual(x["image"].dtype, tf.float32)
        self.assertEqual(x["tokens"].shape, (2, 4))
        self.assertEqual(set(meta), {"example_id"})
        all_ids = np.concatenate([m["example_id"].numpy() for _, _, m in batches])
        self.assertEqual(sorted(all_ids.tolist()), [0, 1, 2])

    def test_decode_composites_alpha_over_white(self):
        folder = self.folder
        png = tf.io.read_file(str(folder / "animals" / "cats" / "red_cat_nicu_01.png"))
        image = oc.decode_image(png, image_size=4).numpy()
        self.assertEqual(image.shape, (4, 4, 3))
        np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0], atol=1e-5)  # Transparent -> white.
        np.testing.assert_allclose(image[2, 2], [1.0, 0.0, 0.0], atol=1e-5)  # Opaque red stays.
        # Inside tf.data, the same result.
        ds = tf.data.Dataset.from_tensors(png).map(lambda b: oc.decode_image(b, 4))
        np.testing.assert_allclose(next(iter(ds)).numpy(), image, atol=1e-6)

    def test_decode_pads_non_square_with_white(self):
        folder = self.folder
        png = tf.io.read_file(str(folder / "animals" / "blue_dog.png"))  # 6 high, 3 wide, grey.
        image = oc.decode_image(png, image_size=6).numpy()
        grey = 200 / 255 * 200 / 255 + (1 - 200 / 255)  # Half-transparent grey over white.
        np.testing.assert_allclose(image[:, 0], 1.0, atol=1e-5)  # White padding on the left.
        np.testing.assert_allclose(image[:, 3], grey, atol=1e-2)


if __name__ == "__main__":
    tf.test.main()
