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
