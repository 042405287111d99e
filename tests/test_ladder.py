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
        base = summary["_baseline"]
        self.assertEqual(
            (base["config"], base["budget"], base["picked_on"], base["train_data"]),
            ("uniform_lr1e-3", 400, "test", "train"),
        )
        self.assertAllClose(base["final_accuracy_mean"], 0.80)
        self.assertTrue(base["at_largest_budget"])
        self.assertEqual(summary["_baselines"]["train"], base)
        row = summary["learnability"]
        m1 = math.exp(math.log(100) + 0.5 * math.log(2))  # Seed 1: 0.80 halfway from 0.75.
        updates = [400 / 200, 400 / m1]
        self.assertAllClose(row["updates_speedup"], sum(updates) / 2)
        # Sample std (ddof = 1): for two seeds |a - b| / sqrt(2).
        self.assertAllClose(row["updates_speedup_std"], abs(updates[0] - updates[1]) / 2**0.5)
        self.assertEqual(row["std_ddof"], 1)
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

    def test_per_budget_is_against_the_best_uniform_within_that_budget(self):
        # Uniform peaks at 200 and falls at 400 (it memorises noise): at 400 the baseline is
        # still its 200-update result, not its worse 400-update one.
        records = []
        for seed in (0, 1):
            for b, a in ((100, 0.6), (200, 0.8), (400, 0.7)):
                records.append(_record("uniform", seed, b, a, 1.0, "uniform"))
            for b, a in ((100, 0.8), (200, 0.85), (400, 0.86)):
                records.append(_record("method", seed, b, a, 1.0))
        at_400 = ladder.summarize(records)["noisy"]["method"]["per_budget"]["400"]
        self.assertEqual((at_400["baseline_budget"], at_400["target"]), (200, 0.8))
        self.assertAllClose(at_400["updates_speedup"], 2.0)  # 200 / 100, a lower bound.

    def test_pretraining_counts_in_the_headline_compute_ratio(self):
        ladder_budgets = (100, 200, 400)
        records = [
            _record("uniform", s, b, b / 1000, 1.0, "uniform")
            for s in (0, 1)
            for b in ladder_budgets
        ]
        for seed in (0, 1):
            for b in ladder_budgets:
                record = _record("method", seed, b, 2 * b / 1000, 1.0)
                records.append(dict(record, reference_pretraining_flops=200.0))
        row = ladder.summarize(records)["noisy"]["method"]
        self.assertAllClose(row["updates_speedup"], 2.0)  # 0.4 at 200 instead of 400.
        self.assertAllClose(row["flops_speedup"], 2.0)  # A reused reference: amortised.
        self.assertAllClose(row["flops_speedup_incl_pretraining"], 400 / (200 + 200))

    def test_matched_baselines_and_picks_on_validation(self):
        # Two uniform baselines (train; train + held-out) and two rates of one selection arm.
        # On validation the 1e-3 rate is better; on test 2e-3 would look better: the pick, the
        # target and the baseline's budget all follow validation; figures are read on test.
        records = []

        def add(config, data, seed, budget, test, valid, policy="uniform", **extra):
            record = _record(config, seed, budget, test, 1.0, policy)
            records.append(dict(record, final_validation_accuracy=valid, **extra))

        for seed in (0, 1, 2):
            for b in (100, 200, 400):
                add("uniform_train", "train", seed, b, b / 1000, b / 1000, train_data="train")
                # With the held-out data uniform does better, best on validation at 200.
                valid = {100: 0.3, 200: 0.5, 400: 0.45}[b]
                add("uniform_more", "more", seed, b, valid - 0.05, valid, train_data="more")
                sel = dict(reference_data="clean", baseline_train_data="more")
                add("sel_lr1", "", seed, b, 0.5, 0.6, "learnability", **sel)
                add("sel_lr2", "", seed, b, 0.9, 0.4, "learnability", **sel)
        summary = ladder.summarize(records)["noisy"]
        self.assertEqual(summary["_picked_on"], "validation")
        more = summary["_baselines"]["more"]
        self.assertEqual(
            (more["config"], more["budget"], more["picked_on"]), ("uniform_more", 200, "validation")
        )
        self.assertAllClose(more["final_accuracy_mean"], 0.45)  # Reported on test.
        self.assertAllClose(more["final_validation_accuracy_mean"], 0.5)
        self.assertEqual(summary["_picks"], {"learnability_keep0.5_clean": "sel_lr1"})
        row = summary["sel_lr1"]
        self.assertTrue(row["picked"])
        self.assertFalse(summary["sel_lr2"]["picked"])
        self.assertEqual((row["baseline"], row["reference_data"]), ("more", "clean"))
        self.assertEqual(row["seeds_reaching"], 3)
        self.assertTrue(row["reached_at_smallest_budget"])  # 0.5 >= 0.45 at 100 already.
        self.assertAllClose(row["updates_speedup"], 2.0)
        self.assertEqual(summary["uniform_train"]["train_data"], "train")

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
