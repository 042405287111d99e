"""tools/results_table.py: the README's ladder tables, per metric for ActiveCLIP's summary."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import tensorflow as tf

from tools import results_table


def _row(baseline, final, speedup):
    return {
        "policy": "uniform" if baseline else "learnability",
        "keep_fraction": 0.5,
        "is_baseline": baseline,
        "baseline": "train",
        "seeds": 3,
        "budgets": [250, 500],
        "runs_per_budget": [3, 3],
        "final_accuracy_mean": final,
        "final_accuracy_std": {m: [0.01, 0.02] for m in final},
        "peak_accuracy_mean": {m: max(v) for m, v in final.items()},
        "updates_speedup": speedup,
        "updates_speedup_std": {m: 0.1 for m in speedup},
        "flops_speedup": speedup,
        "flops_speedup_std": {m: 0.1 for m in speedup},
        "flops_speedup_incl_pretraining": speedup,
        "flops_speedup_incl_pretraining_std": {m: 0.1 for m in speedup},
        "reached_at_smallest_budget": {m: False for m in speedup},
    }


def _baseline(budget, accuracy, picked_on="test", train_data="train"):
    return {
        "picked_on": picked_on,
        "train_data": train_data,
        "config": "uniform",
        "budget": budget,
        "final_accuracy_mean": accuracy,
        "at_largest_budget": True,
    }


class ResultsTableTest(tf.test.TestCase):
    def test_metric_keyed_summary_gets_a_table_per_readme_metric(self):
        metrics = results_table.README_METRICS + ("image_to_text_recall@1",)
        uniform = _row(True, {m: [0.1, 0.2] for m in metrics}, {m: None for m in metrics})
        active = _row(False, {m: [0.15, 0.3] for m in metrics}, {m: 1.6 for m in metrics})
        bases = {m: {"train": _baseline(500, 0.2)} for m in metrics}
        results = {
            "suite": "activeclip",
            "summary": {"clip": {"uniform": uniform, "active": active, "_baselines": bases}},
            "runs": [{}] * 12,
            "not_run": [{}] * 2,
        }
        tmp = self.get_temp_dir()
        path, readme = os.path.join(tmp, "activeclip.json"), os.path.join(tmp, "README.md")
        with open(path, "w") as f:
            json.dump(results, f)
        with open(readme, "w") as f:
            f.write("intro\n<!-- activeclip-summary -->\nold\n<!-- /activeclip-summary -->\nend\n")
        results_table.update_readme(path, readme)
        with open(readme) as f:
            text = f.read()
        self.assertNotIn("old", text)
        self.assertTrue(text.startswith("intro\n") and text.endswith("end\n"))
        for m in results_table.README_METRICS:
            self.assertIn(f"**{m}**", text)
            self.assertIn(f"final {m} 0.2000 (test, mean over seeds; picked on test)", text)
        self.assertNotIn("image_to_text_recall@1", text)  # In the JSON, not the README.
        self.assertEqual(text.count("| clip | active | 0.5 | 3 | 250: 0.1500 ± 0.0100"), 3)
        self.assertEqual(text.count("1.60x ± 0.10 | 1.60x ± 0.10 | compute-positive |"), 3)
        # A uniform row has no speed-up against the best uniform: none is printed.
        self.assertEqual(text.count("| — | — | — | baseline |"), 3)
        self.assertIn("Runs in this summary: 12 of 14.", text)

    def test_matched_table_lists_each_picked_arm_against_its_matched_baseline(self):
        row = {
            "baseline": "train+heldout_clean10k",
            "reference_data": "clean_heldout10k",
            "seeds": 3,
            "seeds_reaching": 3,
            "updates_speedup": 1.5,
            "updates_speedup_std": 0.2,
            "flops_speedup": 1.3,
            "flops_speedup_std": 0.1,
            "flops_speedup_incl_pretraining": None,  # Not every seed reaches it.
            "flops_speedup_incl_pretraining_std": None,
        }
        base = _baseline(1500, 0.88, "validation", "train+heldout_clean10k")
        summary = {
            "noisy_val": {
                "learnability_lr2e-3": row,
                "_baselines": {"train+heldout_clean10k": base},
                "_picks": {"learnability_keep0.5_clean_heldout10k": "learnability_lr2e-3"},
                "_picked_on": "validation",
            },
            "picked_on_test": {"_picked_on": "test", "_picks": {"x": "y"}},
        }
        path = os.path.join(self.get_temp_dir(), "classact.json")
        with open(path, "w") as f:
            json.dump({"summary": summary}, f)
        text = results_table.matched_table(path)
        self.assertIn(
            "| noisy_val | clean_heldout10k | train+heldout_clean10k, uniform, 1500 (largest "
            "budget): 0.8800 | learnability_lr2e-3 | 1.50x ± 0.20 | not reached | 1.30x ± 0.10 "
            "| 3 of 3 |",
            text,
        )
        self.assertNotIn("picked_on_test", text)  # Only regimes picked on validation.


if __name__ == "__main__":
    tf.test.main()
