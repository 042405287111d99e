"""Per-pair contrastive losses against a hand-computed two-pair case."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import math

import numpy as np
import tensorflow as tf

from active_keras import losses
from active_keras.losses import contrastive
from active_keras.models import clip_outputs


def softplus(v):
    return math.log1p(math.exp(v))


# Two pairs, D = 2: similarities x_i . y_j = [[1, 0.6], [0, 0.8]], scale 2, bias -1.
IMAGE = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
TEXT = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
PACKED = clip_outputs.pack(
    IMAGE, TEXT, np.full([2, 1], 2.0, np.float32), np.full([2, 1], -1.0, np.float32)
)
LABELS = np.zeros([2], np.int32)


class ContrastiveTest(tf.test.TestCase):
    def test_unpack_round_trip(self):
        parts = clip_outputs.unpack(PACKED)
        np.testing.assert_allclose(parts["image"], IMAGE)
        np.testing.assert_allclose(parts["text"], TEXT)
        self.assertEqual(float(parts["logit_scale"]), 2.0)
        self.assertEqual(float(parts["logit_bias"]), -1.0)

    def test_clip_per_pair_matches_hand_computation(self):
        # Logits 2 * sim = [[2, 1.2], [0, 1.6]]; each pair: mean of its row and column CE.
        expected = [
            0.5 * (softplus(1.2 - 2.0) + softplus(0.0 - 2.0)),
            0.5 * (softplus(0.0 - 1.6) + softplus(1.2 - 1.6)),
        ]
        per_pair = losses.ClipLoss().call(LABELS, PACKED)
        np.testing.assert_allclose(per_pair, expected, rtol=1e-5)
        # Reduced by Keras: the usual batch CLIP loss.
        np.testing.assert_allclose(losses.ClipLoss()(LABELS, PACKED), np.mean(expected), rtol=1e-5)

    def test_siglip_per_pair_matches_hand_computation(self):
        # Logits 2 * sim - 1 = [[1, 0.2], [-1, 0.6]]; diagonal positive, the rest negative.
        row0 = softplus(-1.0) + softplus(0.2)
        row1 = softplus(-1.0) + softplus(-0.6)
        col0 = softplus(-1.0) + softplus(-1.0)
        col1 = softplus(0.2) + softplus(-0.6)
        expected = [0.5 * (row0 + col0), 0.5 * (row1 + col1)]
        per_pair = losses.SigLipLoss().call(LABELS, PACKED)
        np.testing.assert_allclose(per_pair, expected, rtol=1e-5)
        # SigLIP batch loss: sum of all four terms over the batch size.
        batch = (row0 + row1) / 2.0
        np.testing.assert_allclose(losses.SigLipLoss()(LABELS, PACKED), batch, rtol=1e-5)

    def test_sample_weight_applies_per_pair(self):
        weighted = losses.SigLipLoss()(LABELS, PACKED, sample_weight=np.array([1.0, 0.0]))
        per_pair = losses.SigLipLoss().call(LABELS, PACKED).numpy()
        np.testing.assert_allclose(weighted, per_pair[0] / 2.0, rtol=1e-5)

    def test_negative_dot(self):
        np.testing.assert_allclose(losses.negative_dot(None, PACKED), [-1.0, -0.8], rtol=1e-6)

    def test_scale_and_bias_get_gradients(self):
        scale = tf.Variable(2.0)
        bias = tf.Variable(-1.0)
        with tf.GradientTape() as tape:
            packed = clip_outputs.pack(IMAGE, TEXT, tf.fill([2, 1], scale), tf.fill([2, 1], bias))
            loss = tf.reduce_mean(contrastive.siglip_per_pair(packed))
        grads = tape.gradient(loss, [scale, bias])
        self.assertTrue(all(g is not None and abs(float(g)) > 0 for g in grads))

    def test_get_names(self):
        self.assertIsInstance(losses.get("clip"), losses.ClipLoss)
        self.assertIsInstance(losses.get("siglip"), losses.SigLipLoss)


if __name__ == "__main__":
    tf.test.main()
