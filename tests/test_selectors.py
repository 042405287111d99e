"""Selectors (top-k, Gumbel-top-k sampling) in eager, graph and XLA modes."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.selection import selectors

MODES = ["eager", "graph", "jit"]


def _wrap(fn, mode):
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=mode == "jit")


class SelectorsTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.named_parameters((m, m) for m in MODES)
    def test_topk_picks_exactly_the_k_highest(self, mode):
        scores = tf.constant(np.random.default_rng(0).normal(size=64).astype("float32"))
        idx = _wrap(lambda s: selectors.topk(s, 10), mode)(scores).numpy()
        self.assertEqual(sorted(idx), sorted(np.argsort(-scores.numpy())[:10]))

    @parameterized.named_parameters((m, m) for m in MODES)
    def test_sample_never_repeats_an_index(self, mode):
        seed = keras.random.SeedGenerator(1)
        fn = _wrap(lambda s: selectors.sample(s, 48, temperature=0.5, seed=seed), mode)
        scores = tf.constant(np.random.default_rng(1).normal(size=64).astype("float32"))
        draws = [fn(scores).numpy() for _ in range(20)]
        for idx in draws:
            self.assertEqual(len(set(idx.tolist())), 48)
            self.assertGreaterEqual(idx.min(), 0)
            self.assertLess(idx.max(), 64)
        # A stateful seed gives a different draw each step.
        self.assertTrue(any(set(d) != set(draws[0]) for d in draws[1:]))

    def test_sample_follows_the_softmax_of_score_over_temperature(self):
        # For k = 1, Gumbel-top-k is exactly a draw from softmax(scores / T).
        scores = np.array([0.0, 1.0, 2.0, 0.5], np.float32)
        seed = keras.random.SeedGenerator(3)
        n = 8000
        for temperature in (0.5, 2.0):

            @tf.function
            def draws(s, t=temperature):
                out = tf.TensorArray(tf.int32, size=n)
                for i in tf.range(n):  # A graph loop: one trace, n draws.
                    out = out.write(i, selectors.sample(s, 1, t, seed=seed)[0])
                return out.stack()

            picks = draws(scores).numpy()
            counts = np.bincount(picks, minlength=4)
            p = np.exp(scores / temperature) / np.exp(scores / temperature).sum()
            chi2 = (((counts - n * p) ** 2) / (n * p)).sum()
            self.assertLess(chi2, 16.3, (temperature, counts, n * p))  # p = 0.001 at 3 dof.

    def test_high_temperature_is_close_to_uniform_and_low_to_topk(self):
        scores = tf.constant(np.arange(32, dtype=np.float32))
        seed = keras.random.SeedGenerator(4)
        cold = selectors.sample(scores, 8, temperature=1e-3, seed=seed).numpy()
        self.assertEqual(sorted(cold), list(range(24, 32)))
        hot = np.concatenate(
            [selectors.sample(scores, 8, 1e4, seed=seed).numpy() for _ in range(50)]
        )
        # Uniform over 0..31: mean 15.5, s.e. about 0.5.
        self.assertLess(abs(hot.mean() - 15.5), 1.5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "Unknown selection 'best'"):
            selectors.get("best")
        with self.assertRaisesRegex(ValueError, "temperature must be > 0"):
            selectors.sample(tf.zeros([4]), 2, temperature=0.0)


if __name__ == "__main__":
    tf.test.main()
