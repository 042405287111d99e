"""Fashion-MNIST loading, label noise and validation, eagerly and inside tf.data."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gzip

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.data import classification, fashion_mnist, idx, label_noise, pixels, validation
from active_keras.data.errors import MissingDataError


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


class PixelsTest(tf.test.TestCase):
    def test_to_unit_eagerly_and_inside_tf_data(self):
        images = np.array([[[0], [128], [255]]], np.uint8)
        expected = np.array([[[0.0], [128 / 255], [1.0]]], np.float32)
        eager = pixels.to_unit(images)
        self.assertEqual(eager.dtype, tf.float32)
        self.assertAllClose(eager, expected)
        (mapped,) = list(tf.data.Dataset.from_tensors(images).map(pixels.to_unit))
        self.assertAllClose(mapped, expected)


class DataTest(parameterized.TestCase, tf.test.TestCase):
    def test_idx_round_trip(self):
        tmp_dir = self.get_temp_dir()
        array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        path = os.path.join(tmp_dir, "a-idx3-ubyte.gz")
        _write_idx(path, array)
        np.testing.assert_array_equal(idx.read_idx(path), array)

    def test_idx_rejects_a_truncated_file(self):
        tmp_dir = self.get_temp_dir()
        path = os.path.join(tmp_dir, "bad-idx1-ubyte.gz")
        _write_idx(path, np.zeros(10, np.uint8))
        with gzip.open(path, "rb") as f:
            data = f.read()
        with gzip.open(path, "wb") as f:
            f.write(data[:-3])
        with self.assertRaisesRegex(ValueError, "header promises 10 bytes.*holds 7"):
            idx.read_idx(path)

    def test_real_fashion_mnist_from_the_debian_package(self):
        images, labels = fashion_mnist.load_debian("test")
        self.assertEqual(images.shape, (10000, 28, 28, 1))
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(labels.shape, (10000,))
        self.assertEqual(set(np.unique(labels)), set(range(10)))

    def test_missing_package_says_how_to_install(self):
        tmp_dir = self.get_temp_dir()
        with self.assertRaisesRegex(MissingDataError, "apt-get install -y dataset-fashion-mnist"):
            fashion_mnist.load_debian("train", data_dir=str(tmp_dir))

    def test_label_noise_is_seeded_exact_and_recorded(self):
        labels = np.repeat(np.arange(10), 100).astype(np.int32)
        noisy, corrupted = label_noise.corrupt_labels(labels, 0.2, 10, seed=3)
        self.assertEqual(corrupted.sum(), 200)
        # Exactly the recorded ones changed.
        np.testing.assert_array_equal(noisy != labels, corrupted)
        again, _ = label_noise.corrupt_labels(labels, 0.2, 10, seed=3)
        np.testing.assert_array_equal(noisy, again)
        self.assertGreaterEqual(noisy.min(), 0)
        self.assertLess(noisy.max(), 10)

    def test_splits_are_disjoint_and_noise_touches_only_train(self):
        data = classification.ImageClassificationData("digits", label_noise=0.3, heldout_size=300)
        train, held = data.splits["train"], data.splits["heldout"]
        self.assertFalse(set(train.ids) & set(held.ids))
        self.assertEqual(len(train) + len(held), 1400)
        self.assertLess(abs(train.corrupted.mean() - 0.3), 0.01)
        self.assertFalse(held.corrupted.any())

    def test_validation_is_noisy_disjoint_and_leaves_a_smaller_train_split_as_it_was(self):
        def make(**kwargs):
            return classification.ImageClassificationData(
                "digits", label_noise=0.3, heldout_size=300, train_size=600, **kwargs
            )

        data, without = make(validation_size=400), make()
        train, valid, held = (data.splits[s] for s in ("train", "validation", "heldout"))
        for field in ("images", "labels", "corrupted", "ids"):  # 1,100 in the pool, 600 used.
            np.testing.assert_array_equal(
                getattr(train, field), getattr(without.splits["train"], field)
            )
        self.assertLen(valid, 400)
        self.assertFalse(set(valid.ids) & (set(train.ids) | set(held.ids)))
        self.assertLess(abs(valid.corrupted.mean() - 0.3), 0.01)  # As noisy as train.
        self.assertNotIn("validation", without.splits)

    def test_validation_comes_out_of_the_training_pool(self):
        data = classification.ImageClassificationData(
            "digits", heldout_size=300, validation_size=100
        )
        self.assertEqual(len(data.splits["train"]), 1400 - 300 - 100)

    @parameterized.named_parameters(
        ("validation_too_large", dict(validation_size=1100), "validation_size=1100"),
        ("limit_above_the_heldout_size", dict(heldout_limit=301), "heldout_limit=301"),
    )
    def test_sizes_out_of_range_are_named(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            classification.ImageClassificationData("digits", heldout_size=300, **kwargs)

    def test_train_with_a_limited_heldout_set_keeps_the_train_split_and_adds_clean_labels(self):
        plain = classification.ImageClassificationData("digits", label_noise=0.3, heldout_size=300)
        data = classification.ImageClassificationData(
            "digits", label_noise=0.3, heldout_size=300, heldout_limit=100, train_with_heldout=True
        )
        held = data.splits["heldout"]
        self.assertLen(held, 100)
        np.testing.assert_array_equal(held.ids, plain.splits["heldout"].ids[:100])
        train = data.splits["train"]
        self.assertLen(train, 1100 + 100)
        np.testing.assert_array_equal(train.ids[:1100], plain.splits["train"].ids)
        np.testing.assert_array_equal(train.ids[1100:], held.ids)
        self.assertFalse(train.corrupted[1100:].any())
        np.testing.assert_array_equal(train.labels[1100:], held.labels)

    def test_crossfit_folds_halve_the_train_split(self):
        data = classification.ImageClassificationData("digits", label_noise=0.3, heldout_size=300)
        folds = [data.split(name) for name in classification.CROSSFIT_FOLDS]
        train = data.splits["train"]
        self.assertEqual([len(f) for f in folds], [550, 550])
        self.assertFalse(set(folds[0].ids) & set(folds[1].ids))
        self.assertEqual(set(folds[0].ids) | set(folds[1].ids), set(train.ids))
        by_id = dict(zip(train.ids, train.labels, strict=True))
        self.assertEqual([by_id[i] for i in folds[1].ids], list(folds[1].labels))  # Noisy labels.
        x, _, meta = next(iter(data.dataset("train_fold0", 64, shuffle=True, repeat=True)))
        self.assertEqual(x.shape[0], 64)
        self.assertContainsSubset(set(meta["example_id"].numpy()), set(folds[0].ids))
        with self.assertRaisesRegex(ValueError, "Unknown split 'train_fold2'"):
            data.split("train_fold2")

    def test_training_batches_have_a_static_super_batch_size(self):
        data = classification.ImageClassificationData("digits", heldout_size=100)
        ds = data.train_dataset(batch_size=64)
        self.assertEqual(ds.element_spec[0].shape.as_list(), [64, 8, 8, 1])
        x, y, meta = next(iter(ds))
        self.assertLessEqual(float(tf.reduce_max(x)), 1.0)
        self.assertEqual(set(meta), {"corrupted", "example_id"})

    def test_unknown_data_set_names_the_choices(self):
        with self.assertRaisesRegex(ValueError, "Unknown data set 'mnist'.*fashion_mnist"):
            classification.ImageClassificationData("mnist")

    def test_check_labels_names_the_offending_value(self):
        with self.assertRaisesRegex(ValueError, "Label 12 at index 2 is outside the class range"):
            validation.check_labels(np.array([0, 3, 12, 1]), 10)
        with self.assertRaisesRegex(ValueError, "Label -1 at index 0"):
            validation.check_labels(np.array([-1, 3]), 10)
        validation.check_labels(np.array([0, 9]), 10)

    def test_check_images_names_the_shapes(self):
        with self.assertRaisesRegex(
            ValueError, r"shape \(28, 28\); the model expects \(28, 28, 1\)"
        ):
            validation.check_images(np.zeros((2, 28, 28)), (28, 28, 1))

    @parameterized.named_parameters(("eager", False), ("in_dataset", True))
    def test_label_range_op_eagerly_and_in_tf_data(self, in_dataset):
        check = validation.label_range_op(10)
        images = tf.zeros([3, 2])
        good, bad = tf.constant([0, 9, 4]), tf.constant([0, 11, 4])
        if in_dataset:
            ok = list(tf.data.Dataset.from_tensor_slices((images, good)).map(check))
            self.assertEqual(len(ok), 3)
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "(?s)class range.*11"):
                list(tf.data.Dataset.from_tensor_slices((images, bad)).batch(3).map(check))
        else:
            check(images, good)
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "(?s)class range.*11"):
                check(images, bad)


if __name__ == "__main__":
    tf.test.main()
