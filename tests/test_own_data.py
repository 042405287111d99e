"""Your own data: an image folder (`folder:PATH`), a local TFDS builder (`tfds:NAME`) and an
image-text folder for ActiveCLIP, read eagerly, through `tf.data` and from the command line."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import subprocess
import tempfile

import gin
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from active_keras.data import classification, openclipart, validation
from active_keras.tasks import clip_task
from active_keras.tasks.classification import ClassificationTask
from tests import own_data
from tests.cli_helpers import ROOT, env

SORTED_CLASSES = tuple(sorted(own_data.CLASSES))  # Labels index the sorted folder names.


def _tmp(test):
    """A fresh empty folder inside `test`'s temporary directory."""
    return tempfile.mkdtemp(dir=test.get_temp_dir())


def _main(test, gin_file, model_dir, bindings):
    """Runs the CLI; asserts it succeeded. Returns the process and the run's curve."""
    cmd = [sys.executable, "-m", "active_keras.main", f"--gin_file={gin_file}"]
    cmd += [f"--model_dir={model_dir}"] + [f"--gin_bindings={b}" for b in bindings]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env())
    test.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with open(os.path.join(model_dir, "metrics.json")) as f:
        return proc, json.load(f)["curve"]


def _by_label(written):
    """`{label: set of image bytes}` of `own_data.class_folder`'s images."""
    return {
        SORTED_CLASSES.index(name): {image.tobytes() for image in images}
        for name, images in written.items()
    }


class ImageFolderTest(parameterized.TestCase, tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()

    @parameterized.named_parameters(("class_folders", False), ("train_test_folders", True))
    def test_reads_like_a_built_in_set(self, split_layout):
        root = _tmp(self)
        written = own_data.class_folder(root, per_class=12, split_layout=split_layout)
        data = classification.ImageClassificationData(
            f"folder:{root}", label_noise=0.25, heldout_size=6, seed=3
        )
        self.assertEqual(data.class_names, SORTED_CLASSES)
        self.assertEqual(data.num_classes, 3)
        self.assertEqual(data.input_shape, (28, 28, 1))
        self.assertEqual(data.skipped, {"corrupt": 1})  # broken.png; README.txt is no image.
        train, held, test = (data.splits[s] for s in ("train", "heldout", "test"))
        self.assertEqual(len(train) + len(held) + len(test), 36)
        self.assertLen(held, 6)
        if split_layout:
            self.assertLen(test, 9)  # Every fourth image of each class was written to test/.
        self.assertGreater(len(test), 0)
        # Stable ids: disjoint across splits; test ids follow the training source's.
        ids = [set(s.ids) for s in (train, held, test)]
        self.assertFalse(ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        self.assertEqual(min(test.ids), len(train) + len(held))
        # Noise only in train, exactly where flagged; the pixels are the files'.
        expected = _by_label(written)
        for split in (train, held, test):
            for image, label, corrupted in zip(
                split.images, split.labels, split.corrupted, strict=True
            ):
                self.assertEqual(image.tobytes() in expected[label], not corrupted)
        self.assertEqual(int(train.corrupted.sum()), round(0.25 * len(train)))
        self.assertFalse(held.corrupted.any() or test.corrupted.any())
        again = classification.ImageClassificationData(
            f"folder:{root}", label_noise=0.25, heldout_size=6, seed=3
        )
        np.testing.assert_array_equal(again.splits["train"].ids, train.ids)
        np.testing.assert_array_equal(again.splits["train"].labels, train.labels)

    def test_local_switch_fits_a_small_folder(self):
        root = _tmp(self)
        own_data.class_folder(root, per_class=12)  # 32 training images (one is corrupt).
        with self.assertRaisesRegex(ValueError, r"heldout_size=1000 must be in \[0, 32\)"):
            classification.ImageClassificationData(f"folder:{root}", heldout_size=1000)
        gin.parse_config_file(os.path.join(ROOT, "gin", "local.gin"))
        data = classification.ImageClassificationData(f"folder:{root}")
        self.assertLen(data.splits["heldout"], 6)  # A fifth of 32, not local.gin's 1000.
        self.assertLen(data.splits["train"], 26)
        gin.clear_config()

    def test_task_dataset_eagerly_and_through_tf_data(self):
        root = _tmp(self)
        own_data.class_folder(root, per_class=12)
        task = ClassificationTask(
            data=classification.ImageClassificationData(f"folder:{root}", heldout_size=6)
        )
        # Eagerly: the training stream has a static super-batch size.
        ds = task.dataset("train", 8, shuffle=True, repeat=True, seed=1)
        self.assertEqual(ds.element_spec[0].shape.as_list(), [8, 28, 28, 1])
        x, y, meta = next(iter(ds))
        self.assertAllInRange(x, 0.0, 1.0)
        self.assertAllInRange(y, 0, 2)
        self.assertEqual(set(meta), {"corrupted", "example_id"})
        # Resuming at batch 3 gives batch 3 of the uninterrupted stream.
        third = list(ds.take(4))[3]
        resumed = next(
            iter(task.dataset("train", 8, shuffle=True, repeat=True, seed=1, start_batch=3))
        )
        self.assertAllEqual(third[2]["example_id"], resumed[2]["example_id"])

        # Through tf.data in a graph: count and label-check the whole test split.
        @tf.function
        def count(ds):
            return ds.reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.size(b[1], tf.int64))

        test = task.dataset("test", 5).map(validation.label_range_op(3))
        self.assertEqual(int(count(test)), len(task.data.splits["test"]))
        self.assertBetween(task.evaluate(task.build_learner())["test_accuracy"], 0.0, 1.0)

    def test_images_of_another_shape_are_named_or_resized(self):
        root = _tmp(self)
        own_data.class_folder(root, per_class=6, corrupt=False)
        odd = os.path.join(root, "Trouser", "zz_big.png")
        Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(odd)
        with self.assertRaisesRegex(
            ValueError, r"zz_big\.png has shape \(40, 30, 3\); .* has \(28, 28, 1\).*image_size"
        ):
            classification.ImageClassificationData(f"folder:{root}", heldout_size=2)
        gin.parse_config(["ImageFolder.image_size = 16", "ImageFolder.channels = 1"])
        data = classification.ImageClassificationData(f"folder:{root}", heldout_size=2)
        self.assertEqual(data.input_shape, (16, 16, 1))
        self.assertEqual(sum(len(s) for s in data.splits.values()), 19)

    def test_layout_errors_name_the_folder(self):
        root = _tmp(self)
        with self.assertRaisesRegex(ValueError, "No images .* class sub-folders of .*none"):
            classification.ImageClassificationData(f"folder:{root}")
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            classification.ImageClassificationData(f"folder:{root}/missing")
        own_data.class_folder(root, per_class=4, corrupt=False, split_layout=True)
        os.makedirs(os.path.join(root, "test", "Sock"))
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(os.path.join(root, "test/Sock/a.png"))
        with self.assertRaisesRegex(ValueError, r"class folders \['Sock'\] that .*train lacks"):
            classification.ImageClassificationData(f"folder:{root}")
        with self.assertRaisesRegex(ValueError, "'folder:PATH'"):
            classification.ImageClassificationData("folder")

    @pytest.mark.slow  # A CLI subprocess: about 40 s on a loaded 2-core machine.
    def test_cli_trains_on_a_folder(self):
        tmp_dir = _tmp(self)
        root = os.path.join(tmp_dir, "images")
        own_data.class_folder(root, per_class=40)
        model_dir = os.path.join(tmp_dir, "run")
        bindings = [
            f"ImageClassificationData.name = 'folder:{root}'",
            "ImageClassificationData.heldout_size = 30",
            "ImageClassificationData.label_noise = 0.2",
            "learner/cnn_classifier.widths = (8,)",
            "small/cnn_classifier.widths = (4,)",
            "small/cnn_classifier.dense_units = 0",
            "run.super_batch_size = 16",
            "run.num_steps = 4",
            "run.eval_every = 2",
            "run.jit_compile = False",
            "train_reference.num_steps = 4",
            "train_reference.jit_compile = False",
            f"run.reference_path = '{tmp_dir}/reference.keras'",
        ]
        proc, curve = _main(self, "gin/classact.gin", model_dir, bindings)
        self.assertRegex(proc.stderr, r"Skipped 1 image file\(s\) in .*broken\.png")
        self.assertEqual([p["step"] for p in curve], [0, 2, 4])
        self.assertBetween(curve[-1]["test_accuracy"], 0.0, 1.0)


class TfdsTest(tf.test.TestCase):
    def test_a_locally_prepared_builder_through_tfds_name(self):
        tmp_dir = _tmp(self)
        data_dir = os.path.join(tmp_dir, "tfds")
        builder = own_data.prepare_tiny_fashion(data_dir, os.path.join(tmp_dir, "source"))
        self.assertEqual(builder.name, "tiny_fashion")
        data = classification.ImageClassificationData(
            "tfds:tiny_fashion", heldout_size=5, label_noise=0.2, data_dir=data_dir
        )
        self.assertEqual(data.class_names, own_data.CLASSES)  # The builder's label names.
        self.assertEqual(data.input_shape, (28, 28, 1))
        sizes = {s: len(v) for s, v in data.splits.items()}
        self.assertEqual(sizes, {"train": 16, "heldout": 5, "test": 9})
        expected = {
            own_data.CLASSES.index(name): {image.tobytes() for image in images}
            for name, images in own_data.fashion_images(10).items()
        }
        test = data.splits["test"]
        for image, label in zip(test.images, test.labels, strict=True):
            self.assertIn(image.tobytes(), expected[label])
        x, y, meta = next(iter(data.train_dataset(batch_size=8)))
        self.assertEqual(x.shape, (8, 28, 28, 1))
        self.assertEqual(set(meta), {"corrupted", "example_id"})

    def test_read_from_its_files_without_the_builder_code(self):
        # A fresh interpreter that never imports the builder: TFDS reads the prepared files.
        tmp_dir = _tmp(self)
        data_dir = os.path.join(tmp_dir, "tfds")
        own_data.prepare_tiny_fashion(data_dir, os.path.join(tmp_dir, "source"))
        code = (
            "from active_keras.data.classification import ImageClassificationData as D; "
            f"d = D('tfds:tiny_fashion', heldout_size=5, data_dir={data_dir!r}); "
            "print(d.class_names, {s: len(v) for s, v in d.splits.items()})"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env()
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn(
            "('T-shirt', 'Trouser', 'Bag') {'train': 16, 'heldout': 5, 'test': 9}", proc.stdout
        )

    def test_missing_data_is_named_and_nothing_downloads(self):
        data_dir = _tmp(self)
        with self.assertRaisesRegex(FileNotFoundError, "'tiny_fashion' is not prepared under"):
            classification.ImageClassificationData("tfds:tiny_fashion", data_dir=data_dir)
        with self.assertRaisesRegex(FileNotFoundError, "'no_such_set' is neither registered"):
            classification.ImageClassificationData("tfds:no_such_set", data_dir=data_dir)


class ImageTextFolderTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()

    def _data(self, root, **kwargs):
        return openclipart.ImageTextFolder(
            root, image_size=16, heldout_fraction=0.2, test_fraction=0.2, **kwargs
        )

    def test_captions_from_files_and_from_paths(self):
        root = _tmp(self)
        written = own_data.image_text_folder(root)
        data = self._data(root)
        self.assertEqual(data.class_names, ("bag", "t-shirt", "trouser"))
        self.assertEqual(data.skipped, {"corrupt": 1, "too_large": 0})
        examples = [e for s in openclipart.SPLITS for e in data.examples(s)]
        self.assertLen(examples, 36)
        self.assertTrue(all(data.examples(s) for s in openclipart.SPLITS))
        for e in examples:
            self.assertEqual(e.category, os.path.relpath(e.path, root).split(os.sep)[0])
            want = written[e.path]
            if want is None:  # From the path: category, sub-folders, title without numbering.
                name = e.category.replace("-", " ")
                want = f"{name} studio shots {name} photo"
            self.assertEqual(e.caption, want)
        # Category captions (the reference's clean style) and zero-shot prompts.
        self.assertEqual(set(data.captions("train", "category")), {"bag", "t shirt", "trouser"})
        self.assertEqual(data.prompts("{}"), ["bag", "t shirt", "trouser"])

    def test_clip_task_batches_eagerly_and_through_tf_data(self):
        tmp_dir = _tmp(self)
        root = os.path.join(tmp_dir, "pairs")
        own_data.image_text_folder(root)
        task = clip_task.ClipTask(
            data=self._data(root), vocab_dir=tmp_dir, sequence_length=8, learner_size="tiny"
        )
        ds = task.dataset("train", 4, seed=2)
        x, y, meta = next(iter(ds))
        self.assertEqual(x["image"].shape, (4, 16, 16, 3))
        self.assertAllInRange(x["image"], 0.0, 1.0)
        self.assertEqual(x["tokens"].shape, (4, 8))
        # Example ids name the pairs: captions come back through them.
        facts = task.describe_batch(x, y, meta)
        train = task.data.examples("train")
        want = [train[i].caption for i in np.asarray(meta["example_id"])]
        self.assertEqual(facts["caption"], want)
        self.assertAllEqual(
            facts["label"],
            [task.data.class_names.index(train[i].category) for i in meta["example_id"]],
        )
        # start_batch continues the seeded stream.
        third = list(task.dataset("train", 4, seed=2).take(3))[2]  # A fresh stream.
        resumed = next(iter(task.dataset("train", 4, seed=2, start_batch=2)))
        self.assertAllEqual(third[2]["example_id"], resumed[2]["example_id"])
        # Through tf.data in a graph: the whole test split, PNG and JPEG files alike.
        test = task.dataset("test", 64)
        n = tf.function(lambda d: d.reduce(0, lambda n, b: n + tf.shape(b[1])[0]))(test)
        self.assertEqual(int(n), len(task.data.examples("test")))
        metrics = task.evaluate(task.build_learner())
        self.assertBetween(metrics["zero_shot_accuracy"], 0.0, 1.0)

    def test_needs_category_folders(self):
        root = _tmp(self)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(root, "a.png"))
        with self.assertRaisesRegex(ValueError, "No readable images .* category folders"):
            self._data(root)
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            self._data(os.path.join(root, "missing"))

    @pytest.mark.slow  # A CLI subprocess: about a minute on a loaded 2-core machine.
    def test_activeclip_cli_on_an_image_text_folder(self):
        tmp_dir = _tmp(self)
        root = os.path.join(tmp_dir, "pairs")
        own_data.image_text_folder(root, per_class=16)
        model_dir = os.path.join(tmp_dir, "run")
        bindings = [
            "ClipTask.data = @ImageTextFolder()",
            f"ImageTextFolder.root = '{root}'",
            "ImageTextFolder.image_size = 16",
            f"ImageTextFolder.cache_dir = '{tmp_dir}/cache'",
            "ImageTextFolder.heldout_fraction = 0.2",
            "ImageTextFolder.test_fraction = 0.2",
            # About 3 test images per category: gin/openclipart.gin's 10 would keep none.
            "ClipTask.balanced_per_class = 2",
            "ClipTask.learner_size = 'tiny'",
            "ClipTask.sequence_length = 8",
            "ClipTask.eval_batch_size = 64",
            "run.super_batch_size = 8",
            "run.num_steps = 2",
            "run.eval_every = 2",
            "train_reference.num_steps = 2",
            "train_reference.batch_size = 8",
            f"run.reference_path = '{tmp_dir}/reference.keras'",
        ]
        _, curve = _main(self, "gin/activeclip.gin", model_dir, bindings)
        self.assertEqual([p["step"] for p in curve], [0, 2])
        self.assertBetween(curve[-1]["zero_shot_accuracy"], 0.0, 1.0)
        with open(os.path.join(model_dir, "vocab.txt")) as f:
            vocab = f.read().split()
        self.assertIn("grey", vocab)  # A word only the caption files hold.


if __name__ == "__main__":
    tf.test.main()
