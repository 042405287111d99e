"""`speedup.compare`: updates and FLOPs to reach the baseline's best, edge cases defined."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

from active_keras.analysis import speedup


def _curve(steps, accuracies, flops_per_step=2.0):
    return [
        {"learner_updates": s, "total_flops": flops_per_step * s, "test_accuracy": a}
        for s, a in zip(steps, accuracies, strict=True)
    ]


class CompareTest(tf.test.TestCase):
    def test_updates_and_flops_to_the_baselines_best(self):
        base = _curve([0, 100, 200, 300], [0.1, 0.5, 0.7, 0.6])
        run = _curve([0, 100, 200], [0.1, 0.75, 0.8], flops_per_step=3.0)
        out = speedup.compare(base, run)
        self.assertEqual(out["target"], 0.7)
        self.assertEqual((out["baseline_updates"], out["updates"]), (200, 100))
        self.assertAllClose(out["update_speedup"], 2.0)
        self.assertAllClose(out["flop_speedup"], 400 / 300)
        self.assertTrue(out["reached_at_first_evaluation"])  # A lower bound.
        self.assertFalse(out["reached_at_start"] or out["baseline_never_improves"])

    def test_reference_pretraining_counted_beside(self):
        base = _curve([0, 100, 200], [0.1, 0.5, 0.7])
        run = _curve([0, 100, 200], [0.1, 0.7, 0.8])
        out = speedup.compare(base, run, extra_flops=100.0)
        self.assertAllClose(out["flop_speedup"], 400 / 200)
        self.assertAllClose(out["flop_speedup_with_extra"], 400 / 300)
        self.assertIn("incl. reference pre-training", speedup.format_table({"run": out}))

    def test_run_that_never_reaches(self):
        out = speedup.compare(_curve([0, 100], [0.1, 0.7]), _curve([0, 100], [0.1, 0.6]))
        self.assertIsNone(out["update_speedup"])
        self.assertIsNone(out["flop_speedup"])
        self.assertIsNone(out["updates"])

    def test_baseline_that_never_improves(self):
        base = _curve([0, 100, 200], [0.3, 0.2, 0.1])
        out = speedup.compare(base, _curve([0, 100], [0.3, 0.1]))
        self.assertTrue(out["baseline_never_improves"])
        self.assertEqual(out["update_speedup"], 1.0)
        self.assertEqual(out["flop_speedup"], 1.0)

    def test_run_at_the_target_at_its_start(self):
        out = speedup.compare(_curve([0, 100], [0.1, 0.5]), _curve([0, 100], [0.6, 0.7]))
        self.assertTrue(out["reached_at_start"])
        self.assertIsNone(out["update_speedup"])

    def test_curves_evaluated_at_different_steps(self):
        base = _curve([0, 250, 500, 750], [0.1, 0.6, 0.8, 0.85])
        run = _curve([0, 100, 200, 300, 400, 500], [0.1, 0.5, 0.7, 0.8, 0.86, 0.9])
        out = speedup.compare(base, run)
        self.assertEqual(out["updates"], 400)  # The first evaluated point at the target.
        self.assertAllClose(out["update_speedup"], 750 / 400)
        self.assertFalse(out["reached_at_first_evaluation"])


if __name__ == "__main__":
    tf.test.main()
