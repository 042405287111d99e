"""Joint (chunk-by-chunk) selection: no repeats, expected picks, XLA."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.models import clip_outputs
from active_keras.selection import joint, selectors


def packed(image, text, scale=10.0, bias=-10.0):
    image = np.asarray(image, np.float32)
    n = len(image)
    return clip_outputs.pack(
        image,
        np.asarray(text, np.float32),
        np.full([n, 1], scale, np.float32),
        np.full([n, 1], bias, np.float32),
    )


# Pair 1 duplicates pair 0; pairs 2 and 3 are unrelated to everything.
EYE = np.eye(3, dtype=np.float32)
DUPLICATE = packed([EYE[0], EYE[0], EYE[1], EYE[2]], [EYE[0], EYE[0], EYE[1], EYE[2]])
SCORES = tf.constant([3.0, 1.0, 1.0, 0.0])


class JointSelectionTest(parameterized.TestCase, tf.test.TestCase):
    def test_registered(self):
        self.assertIs(selectors.get("joint"), joint.joint)
        self.assertTrue(selectors.get("joint_topk").uses_context)

    def test_chunk_sizes(self):
        self.assertEqual(joint.chunk_sizes(10, 4), [3, 3, 2, 2])
        with self.assertRaises(ValueError):
            joint.chunk_sizes(3, 4)

    def test_actor_hard_negative_is_chosen_after_its_partner(self):
        # Under the actor, pair 1 is a hard negative of pair 0: adding it to {0}
        # raises the actor's loss by 2 * softplus(0), so it beats pair 2.
        select = joint.make_joint(n_chunks=2, sample=False)
        index = select(SCORES, 2, context={"outputs": {"actor": DUPLICATE}})
        self.assertEqual(index.numpy().tolist(), [0, 1])

    def test_reference_interaction_counts_against(self):
        # The same interaction under the reference lowers learnability: pair 2 wins.
        select = joint.make_joint(n_chunks=2, sample=False)
        index = select(SCORES, 2, context={"outputs": {"reference": DUPLICATE}})
        self.assertEqual(index.numpy().tolist(), [0, 2])

    def test_one_chunk_is_per_pair_topk(self):
        select = joint.make_joint(n_chunks=1, sample=False)
        index = select(SCORES, 2, context={"outputs": {"reference": DUPLICATE}})
        self.assertEqual(index.numpy().tolist(), selectors.topk(SCORES, 2).numpy().tolist())

    def test_softmax_interaction_matches_clip_loss_over_chosen_set(self):
        rng = np.random.default_rng(0)
        z = rng.normal(size=(2, 6, 4)).astype(np.float32)
        z /= np.linalg.norm(z, axis=-1, keepdims=True)
        out = packed(z[0], z[1], scale=3.0, bias=0.0)
        chosen = np.array([1, 0, 1, 0, 0, 1], np.float32)
        got = joint._softmax_interaction(out)(tf.constant(chosen)).numpy()
        logits = 3.0 * z[0] @ z[1].T
        for j in np.flatnonzero(chosen == 0):
            cols = np.flatnonzero(chosen).tolist() + [j]
            row = -logits[j, j] + np.log(np.sum(np.exp(logits[j, cols])))
            col = -logits[j, j] + np.log(np.sum(np.exp(logits[cols, j])))
            np.testing.assert_allclose(got[j], 0.5 * (row + col), rtol=1e-4)

    @parameterized.named_parameters(("sigmoid", "sigmoid"), ("softmax", "softmax"))
    def test_sampling_never_repeats_and_compiles(self, interaction):
        rng = np.random.default_rng(1)
        z = rng.normal(size=(4, 16, 8)).astype(np.float32)
        z /= np.linalg.norm(z, axis=-1, keepdims=True)
        context = {"outputs": {"actor": packed(z[0], z[1]), "reference": packed(z[2], z[3])}}
        # The top per-pair score is huge: a repeat would be drawn if masking failed.
        scores = tf.constant([100.0] + [0.0] * 15)
        select = joint.make_joint(n_chunks=5, interaction=interaction)
        seed = keras.random.SeedGenerator(0)

        @tf.function(jit_compile=True)
        def run():
            return select(scores, 15, temperature=1.0, seed=seed, context=context)

        draws = [run().numpy() for _ in range(5)]
        for index in draws:
            self.assertEqual(index.shape, (15,))
            self.assertEqual(len(set(index.tolist())), 15)
            self.assertEqual(index[0], 0)
        self.assertGreater(len({tuple(d) for d in draws}), 1)  # The seed generator advances.

    def test_needs_context(self):
        with self.assertRaisesRegex(ValueError, "context"):
            joint.joint(SCORES, 2)


if __name__ == "__main__":
    tf.test.main()
