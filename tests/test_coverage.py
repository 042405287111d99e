"""`coverage`: how evenly recorded selections cover the training set."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf

from active_keras.analysis import coverage


class SelectionCountsTest(tf.test.TestCase):
    def test_counts_follow_the_training_ids_order(self):
        train_ids = [30, 10, 20, 40]
        selected = np.array([[10, 10], [40, 10]])
        self.assertAllEqual(coverage.selection_counts(selected, train_ids), [0, 3, 0, 1])

    def test_an_id_outside_the_training_split_is_named(self):
        with self.assertRaisesRegex(ValueError, "1 selected id.*e.g. 1000007"):
            coverage.selection_counts([1, 1000007], [0, 1, 2])


class SummarizeTest(tf.test.TestCase):
    def test_even_counts(self):
        out = coverage.summarize([5] * 20)
        self.assertEqual((out["examples"], out["selections"], out["mean_count"]), (20, 100, 5.0))
        self.assertEqual(out["share_never"], 0.0)
        self.assertEqual(out["share_below_half"], 0.0)
        self.assertAllClose(out["top_10pct_share"], 0.1)
        self.assertAllClose(out["bottom_50pct_share"], 0.5)
        self.assertAllClose(out["gini"], 0.0)

    def test_concentrated_counts(self):
        # Half the examples never selected, the other half 4 times each: mean 2.
        out = coverage.summarize([0] * 10 + [4] * 10)
        self.assertEqual(out["share_never"], 0.5)
        self.assertEqual(out["share_below_half"], 0.5)
        self.assertEqual(out["share_below_quarter"], 0.5)
        self.assertAllClose(out["bottom_50pct_share"], 0.0)
        self.assertAllClose(out["top_10pct_share"], 0.2)
        self.assertAllClose(out["gini"], 0.5)  # Half the mass on half: 1 - 2 * area 0.25.

    def test_a_uniform_draw_covers_evenly_and_a_sharp_one_does_not(self):
        rng = np.random.default_rng(0)
        n, steps, big, small = 500, 400, 64, 32
        merit = rng.normal(size=n)  # A fixed per-example score, as a sharp policy sees it.
        uniform, sharp = [], []
        for _ in range(steps):
            drawn = rng.choice(n, big, replace=False)
            uniform.append(rng.choice(drawn, small, replace=False))
            sharp.append(drawn[np.argsort(-merit[drawn])[:small]])
        even = coverage.summarize(coverage.selection_counts(uniform, np.arange(n)))
        skewed = coverage.summarize(coverage.selection_counts(sharp, np.arange(n)))
        self.assertLess(even["share_below_half"], 0.05)
        self.assertGreater(skewed["share_below_half"], 0.4)
        self.assertGreater(skewed["gini"], even["gini"] + 0.3)


if __name__ == "__main__":
    tf.test.main()
