"""Joint (chunk-by-chunk) selection: no repeats, expected picks, XLA."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gin
import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.losses import contrastive
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


def siglip_sum(image, text, scale, bias, members):
    """The SigLIP loss of the sub-batch `members`, summed over its pairs (numpy, brute force)."""
    x, y = image[members], text[members]
    logits = scale * x @ y.T + bias
    signs = 2.0 * np.eye(len(members)) - 1.0
    return float(np.sum(np.log1p(np.exp(-signs * logits))))


def random_outputs(rng, n, d, scale, bias):
    z = rng.normal(size=(2, n, d))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    return z[0], z[1], packed(z[0], z[1], scale, bias)


class JointSelectionTest(parameterized.TestCase, tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()

    def test_registered(self):
        for name in ("joint", "joint_topk"):
            self.assertTrue(selectors.get(name).uses_context)

    def test_chunks_are_a_gin_setting(self):
        gin.bind_parameter("make_joint.n_chunks", 3)
        select = joint.make_joint(sample=False)
        self.assertEqual(select.n_chunks, 3)

    def test_chunk_sizes(self):
        self.assertEqual(joint.chunk_sizes(10, 4), [3, 3, 2, 2])
        with self.assertRaises(ValueError):
            joint.chunk_sizes(3, 4)

    def test_conditional_learnability_matches_brute_force_sub_batch_losses(self):
        # Every candidate's score is the change of the whole sub-batch's SigLIP loss
        # (own term, its negatives, and its effect on the chosen pairs), actor minus
        # reference, each under its own logit scale and bias.
        rng = np.random.default_rng(0)
        actor = random_outputs(rng, 7, 4, scale=8.0, bias=-6.0)
        reference = random_outputs(rng, 7, 4, scale=12.0, bias=-9.0)
        f = joint.conditional_learnability({"actor": actor[2], "reference": reference[2]})
        for chosen_ids in ([], [2], [0, 3, 5]):
            chosen = np.zeros(7, np.float32)
            chosen[chosen_ids] = 1.0
            got = f(tf.constant(chosen)).numpy()
            for j in set(range(7)) - set(chosen_ids):
                want = 0.0
                for sign, (img, txt, _), t, b in (
                    (1, actor, 8.0, -6.0),
                    (-1, reference, 12.0, -9.0),
                ):
                    after = siglip_sum(img, txt, t, b, chosen_ids + [j])
                    before = siglip_sum(img, txt, t, b, chosen_ids) if chosen_ids else 0.0
                    want += sign * (after - before)
                self.assertAllClose(got[j], want, rtol=1e-4, atol=1e-4)

    def test_first_chunk_is_per_pair_siglip_learnability(self):
        # With nothing chosen, a pair's score is its SigLIP loss as a batch of one.
        rng = np.random.default_rng(1)
        actor, reference = (random_outputs(rng, 6, 4, 10.0, -10.0)[2] for _ in range(2))
        f = joint.conditional_learnability({"actor": actor, "reference": reference})
        want = [
            contrastive.siglip_per_pair(actor[j : j + 1])[0]
            - contrastive.siglip_per_pair(reference[j : j + 1])[0]
            for j in range(6)
        ]
        self.assertAllClose(f(tf.zeros([6])), want, rtol=1e-5)

    def test_topk_picks_match_brute_force_greedy_chunks(self):
        rng = np.random.default_rng(2)
        img, txt, out = random_outputs(rng, 10, 3, scale=10.0, bias=-5.0)
        select = joint.make_joint(n_chunks=3, sample=False)
        got = select(tf.zeros([10]), 6, context={"outputs": {"actor": out}}).numpy().tolist()
        chosen = []
        for n in joint.chunk_sizes(6, 3):
            base = siglip_sum(img, txt, 10.0, -5.0, chosen) if chosen else 0.0
            gains = {
                j: siglip_sum(img, txt, 10.0, -5.0, chosen + [j]) - base
                for j in range(10)
                if j not in chosen
            }
            chosen += sorted(gains, key=lambda j: -gains[j])[:n]
        self.assertEqual(got, chosen)

    def test_actor_hard_negative_is_chosen_after_its_partner(self):
        # Pair 1 duplicates pair 0: under the actor, adding it to {0} adds two
        # hard-negative terms, so it beats the unrelated pairs in the second chunk.
        select = joint.make_joint(n_chunks=2, sample=False)
        index = select(SCORES, 2, context={"outputs": {"actor": DUPLICATE}})
        self.assertIn(1, index.numpy().tolist()[1:])

    def test_reference_interaction_counts_against(self):
        select = joint.make_joint(n_chunks=2, sample=False)
        index = select(SCORES, 2, context={"outputs": {"reference": DUPLICATE}})
        self.assertNotIn(1, index.numpy().tolist()[1:])

    def test_sampling_never_repeats_and_compiles(self):
        rng = np.random.default_rng(1)
        context = {
            "outputs": {
                "actor": random_outputs(rng, 16, 8, 10.0, -10.0)[2],
                "reference": random_outputs(rng, 16, 8, 10.0, -10.0)[2],
            }
        }
        select = joint.make_joint(n_chunks=5)
        seed = keras.random.SeedGenerator(0)

        @tf.function(jit_compile=True)
        def run():
            return select(tf.zeros([16]), 15, temperature=0.05, seed=seed, context=context)

        draws = [run().numpy() for _ in range(5)]
        for index in draws:
            self.assertEqual(index.shape, (15,))
            self.assertEqual(len(set(index.tolist())), 15)
        self.assertGreater(len({tuple(d) for d in draws}), 1)  # The seed generator advances.

    def test_needs_context(self):
        with self.assertRaisesRegex(ValueError, "context"):
            joint.make_joint()(SCORES, 2)


if __name__ == "__main__":
    tf.test.main()
