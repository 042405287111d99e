"""The committed ClassAct evidence: every run decayed to zero, and a summary that matches it.

`python tools/benchmark.py --suite=classact` stores each finished run's small
files under `benchmarks/results/classact_runs/` and writes the summary to
`benchmarks/results/classact.json`; these tests recompute it from the stored
runs, so a summary can neither drift from its runs nor be typed in.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import tensorflow as tf

from active_keras.analysis import ladder
from tools import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STORE = os.path.join(ROOT, "benchmarks", "results", "classact_runs")
RESULTS = os.path.join(ROOT, "benchmarks", "results", "classact.json")


def _stored_runs():
    names = []
    for folder, _, files in os.walk(STORE):
        if "run.json" in files:
            names.append(os.path.relpath(folder, STORE))
    return sorted(names)


class ClassActEvidenceTest(tf.test.TestCase):
    def test_there_are_stored_runs(self):
        self.assertNotEmpty(_stored_runs())

    def test_every_run_decays_its_learning_rate_to_zero_at_its_budget(self):
        for name in _stored_runs():
            with open(os.path.join(STORE, name, "metrics.json")) as f:
                curve = json.load(f)["curve"]
            with open(os.path.join(STORE, name, "run.json")) as f:
                budget = json.load(f)["budget"]
            self.assertEqual(curve[-1]["step"], budget, name)
            self.assertEqual(curve[-1]["learning_rate"], 0.0, name)
            self.assertGreater(curve[0]["learning_rate"], 0.0, name)

    def test_every_run_is_the_configuration_its_name_says(self):
        for name in _stored_runs():
            with open(os.path.join(STORE, name, "run.json")) as f:
                info = json.load(f)
            regime, config, seed, budget = name.split(os.sep)
            self.assertEqual(
                (info["regime"], info["config"], f"seed{info['seed']}", f"n{info['budget']}"),
                (regime, config, seed, budget),
            )
            self.assertIn("make_optimizer.schedule = 'cosine'", info["bindings"])
            self.assertIn(f"run.num_steps = {info['budget']}", info["bindings"])
            self.assertLen(info["config_hash"], 16)

    def test_every_planned_run_is_a_valid_configuration(self):
        # A budget that `run` rejects (not a multiple of eval_every) fails at start-up, deep in a
        # suite of hours: catch it here.
        for run in benchmark.LADDER_SUITES["classact"].make_runs(False, "reference.keras"):
            bindings = dict(b.split(" = ", 1) for b in run.bindings)
            num_steps, eval_every = int(bindings["run.num_steps"]), int(bindings["run.eval_every"])
            self.assertEqual(num_steps % eval_every, 0, run.name)
            # The fair regimes evaluate at the budget only (their ladders read the final point).
            fair = run.ladder["regime"] in benchmark.FAIR_REGIMES
            evals = 1 if fair else benchmark.EVALS_PER_RUN
            self.assertEqual(num_steps // eval_every, evals, run.name)

    def test_summary_is_recomputed_from_the_stored_runs(self):
        with open(RESULTS) as f:
            results = json.load(f)
        records = [benchmark.ladder_record(STORE, name) for name in _stored_runs()]
        self.assertEqual(sorted(r["name"] for r in results["runs"]), _stored_runs())
        expected = json.loads(json.dumps(ladder.summarize(records)))  # As written: via JSON.
        self.assertEqual(results["summary"], expected)

    def test_summary_layout(self):
        with open(RESULTS) as f:
            summary = json.load(f)["summary"]
        for regime, rows in summary.items():
            self.assertIn(regime, {**benchmark.CLASSACT_REGIMES, **benchmark.FAIR_REGIMES})
            self.assertIn(rows["_picked_on"], ("validation", "test"))
            for train_data, base in rows["_baselines"].items():
                self.assertEqual(base["train_data"], train_data)
                self.assertEqual(base["picked_on"], rows["_picked_on"])
            for name, row in rows.items():
                if name.startswith("_"):
                    continue
                for key in (
                    "policy",
                    "keep_fraction",
                    "seeds",
                    "budgets",
                    "final_accuracy_mean",
                    "final_accuracy_std",
                    "updates_speedup",
                    "flops_speedup",
                    "updates_speedup_std",
                    "flops_speedup_std",
                    "flops_speedup_incl_pretraining",
                    "seeds_reaching",
                ):
                    self.assertIn(key, row, f"{regime}/{name}")
                self.assertIsInstance(row["seeds"], int)
                self.assertEqual(row["std_ddof"], 1)
                self.assertIn(row["baseline"], rows["_baselines"])
                if row["is_baseline"]:
                    self.assertIn("train_data", row)
                else:
                    self.assertIn(
                        row["reference_data"], ("clean_heldout10k", "clean_heldout2k", "crossfit")
                    )
                self.assertLen(row["final_accuracy_mean"], len(row["budgets"]))


if __name__ == "__main__":
    tf.test.main()
