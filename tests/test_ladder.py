"""Speed-up at equal accuracy over ladders of budget-matched runs (`analysis.ladder`)."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import math

import tensorflow as tf
from absl.testing import parameterized

from active_keras.analysis import ladder


def _record(config, seed, budget, accuracy, flops_per_update, policy="learnability"):
    return {
        "regime": "noisy",
        "config": config,
        "baseline": policy == "uniform",
        "policy": policy,
        "keep_fraction": 0.5,
        "seed": seed,
        "budget": budget,
        "final_accuracy": accuracy,
        "total_flops": flops_per_update * budget,
    }


class BudgetReachingTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.named_parameters(
        ("interpolated_in_log_budget", 0.6, math.sqrt(100 * 200), False),
        ("at_a_ladder_point", 0.7, 200.0, False),
        ("already_at_the_smallest_budget", 0.4, 100.0, True),
        ("never", 0.9, None, False),
    )
    def test_budget_reaching(self, target, expected, at_smallest):
        budget, smallest = ladder.budget_reaching([100, 200, 400], [0.5, 0.7, 0.8], target)
        if expected is None:
            self.assertIsNone(budget)
        else:
            self.assertAllClose(budget, expected)
        self.assertEqual(smallest, at_smallest)

    def test_first_crossing_of_a_ladder_that_falls_again(self):
        # Uniform on noisy labels memorises: accuracy falls at large budgets.
        budget, _ = ladder.budget_reaching([100, 200, 400], [0.5, 0.9, 0.6], 0.7)
        self.assertAllClose(budget, math.exp(math.log(100) + 0.5 * math.log(2)))

    def test_linear_at(self):
        self.assertAllClose(ladder.linear_at([100, 200], [10.0, 20.0], 150), 15.0)
        self.assertAllClose(ladder.linear_at([100, 200], [10.0, 20.0], 50), 5.0)


class SummarizeTest(tf.test.TestCase):
    def test_speedups_against_the_best_uniform_over_all_budgets(self):
        records = []
        for seed in (0, 1):
            for lr, accs in (("1e-3", (0.60, 0.70, 0.80)), ("2e-3", (0.62, 0.72, 0.78))):
                for b, a in zip((100, 200, 400), accs, strict=True):
                    records.append(_record(f"uniform_lr{lr}", seed, b, a, 1.0, "uniform"))
            # The method reaches 0.80 at 200 updates (seed 0) or between 100 and 200 (seed 1).
            accs = (0.70, 0.80, 0.85) if seed == 0 else (0.75, 0.85, 0.86)
            for b, a in zip((100, 200, 400), accs, strict=True):
                records.append(_record("learnability", seed, b, a, 1.5))
        summary = ladder.summarize(records)["noisy"]
        self.assertEqual(
            summary["_baseline"],
            {
                "config": "uniform_lr1e-3",
                "budget": 400,
                "final_accuracy_mean": 0.80,
                "total_flops_mean": 400.0,
            },
        )
        row = summary["learnability"]
        m1 = math.exp(math.log(100) + 0.5 * math.log(2))  # Seed 1: 0.80 halfway from 0.75.
        updates = [400 / 200, 400 / m1]
        self.assertAllClose(row["updates_speedup"], sum(updates) / 2)
        self.assertAllClose(row["updates_speedup_std"], abs(updates[0] - updates[1]) / 2)
        flops = [400 / (1.5 * 200), 400 / (1.5 * m1)]
        self.assertAllClose(row["flops_speedup"], sum(flops) / 2)
        self.assertEqual(row["seeds"], 2)
        self.assertAllClose(row["final_accuracy_mean"], [0.725, 0.825, 0.855])
        self.assertAllClose(row["peak_accuracy_mean"], 0.855)
        self.assertFalse(row["reached_at_smallest_budget"])
        # At the smallest uniform budget (best: lr 2e-3, 0.62), both seeds are there already.
        smallest = row["per_budget"]["100"]
        self.assertEqual(smallest["baseline_config"], "uniform_lr2e-3")
        self.assertTrue(smallest["reached_at_smallest_budget"])
        self.assertAllClose(smallest["updates_speedup"], 1.0)  # A lower bound.

    def test_no_speedup_unless_every_seed_reaches_the_target(self):
        records = [_record("uniform", s, b, 0.8, 1.0, "uniform") for s in (0, 1) for b in (1, 2)]
        records += [_record("method", 0, b, 0.9, 1.0) for b in (1, 2)]
        records += [_record("method", 1, b, 0.7, 1.0) for b in (1, 2)]
        row = ladder.summarize(records)["noisy"]["method"]
        self.assertIsNone(row["updates_speedup"])
        self.assertIsNone(row["flops_speedup_std"])
        self.assertEqual(row["seeds_reaching"], 1)

    def test_summary_by_metric_keys_each_metric_fields_by_name(self):
        # Metric "a": the method is twice as fast; metric "b": it never catches up.
        records = []
        for seed in (0, 1):
            for b in (100, 200, 400):
                uniform = {"a": b / 1000, "b": b / 1000}
                method = {"a": 2 * b / 1000, "b": b / 2000}
                for config, finals, policy in (("uniform", uniform, "uniform"), ("m", method, "x")):
                    record = _record(config, seed, b, None, 1.0, policy)
                    records.append(dict(record, finals=finals))
        summary = ladder.summarize_by_metric(records, ("a", "b"))["noisy"]
        row = summary["m"]
        self.assertAllClose(row["updates_speedup"]["a"], 2.0)
        self.assertIsNone(row["updates_speedup"]["b"])
        self.assertEqual(row["seeds_reaching"], {"a": 2, "b": 0})
        self.assertAllClose(row["final_accuracy_mean"]["b"], [0.05, 0.1, 0.2])
        self.assertEqual(row["budgets"], [100, 200, 400])  # Not keyed: the same for all.
        self.assertEqual(summary["_baseline"]["a"]["budget"], 400)
        single = ladder.summarize([dict(r, final_accuracy=r["finals"]["a"]) for r in records])
        self.assertEqual(single["noisy"]["m"]["flops_speedup"], row["flops_speedup"]["a"])


if __name__ == "__main__":
    tf.test.main()
