"""The selection log and report: a tiny real CLI run records its selections and renders a page."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib
import io
import json
import re
import shutil
import subprocess
import unittest

import numpy as np
import tensorflow as tf
from PIL import Image

from active_keras.analysis import report
from tests.cli_helpers import tiny_run

FIGURES = (
    "accuracy.png",
    "class_selection.png",
    "corrupted.png",
    "score_histograms.png",
    "top_examples.png",
    "bottom_examples.png",
)


class ReportTest(tf.test.TestCase):
    """Tests of the tiny CLI run that `tests/cli_helpers.py` shares (read only)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        _, model_dir, _ = tiny_run()
        cls.model_dir = model_dir

    def _check_png(self, path):
        self.assertGreater(os.path.getsize(path), 0, path)
        with Image.open(path) as image:
            self.assertEqual(image.format, "PNG")
            image.verify()
        with Image.open(path) as image:
            self.assertGreater(image.size[0], 50)
            self.assertGreater(image.size[1], 50)

    def test_cli_run_logs_selections(self):
        model_dir = self.model_dir
        log_dir = os.path.join(model_dir, "selection_log")
        with open(os.path.join(log_dir, "records.jsonl")) as f:
            records = [json.loads(line) for line in f]
        # TINY evaluates every 6 of 12 steps; the log follows eval_every.
        self.assertEqual([r["step"] for r in records], [6, 12])
        for r in records:
            self.assertTrue(sum(r["class_available"]) == r["examples"] == 4 * 32)
            self.assertTrue(sum(r["class_selected"]) == r["selected"] == 4 * 16)
            self.assertTrue(
                all(s <= a for s, a in zip(r["class_selected"], r["class_available"], strict=True))
            )
            self.assertTrue(0 <= r["corrupted_selected"] <= 1)
            self.assertTrue(0 < r["corrupted_available"] < 1)
            self.assertEqual(sum(r["score_hist"]["all"]), r["examples"])
            self.assertEqual(sum(r["score_hist"]["selected"]), r["selected"])
            self.assertEqual(set(r["mean_loss"]), {"actor", "reference"})
        examples = sorted(f for f in os.listdir(log_dir) if f.endswith(".npz"))
        self.assertEqual(examples, ["step_00000006.npz", "step_00000012.npz"])
        with np.load(os.path.join(log_dir, examples[-1])) as data:
            self.assertEqual(data["top_images"].dtype, np.uint8)
            self.assertEqual(data["top_images"].shape[1:], (8, 8))
            self.assertTrue(np.all(np.diff(data["top_scores"]) <= 0))  # Highest first.
            self.assertGreaterEqual(data["top_scores"].min(), data["bottom_scores"].max())

    def test_cli_run_writes_report_with_valid_figures(self):
        model_dir = self.model_dir
        report_dir = os.path.join(model_dir, "report")
        with open(os.path.join(report_dir, "index.html")) as f:
            page = f.read()
        referenced = re.findall(r'<img src="([^"]+)"', page)
        self.assertEqual(sorted(referenced), sorted(FIGURES))
        for name in FIGURES:
            self._check_png(os.path.join(report_dir, name))

    def test_report_command_compares_runs(self):
        tmp_dir, model_dir = self.get_temp_dir(), self.model_dir
        # A second run to compare with: another metrics.json (no selection log needed).
        other = os.path.join(tmp_dir, "other")
        os.makedirs(other, exist_ok=True)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        metrics["policy"] = "uniform"
        for point in metrics["curve"]:
            point["test_accuracy"] *= 0.9
        with open(os.path.join(other, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        out_dir = os.path.join(tmp_dir, "compared")
        # In process (`python -m active_keras.analysis.report` runs this `main`): a child process
        # would spend most of its time importing TensorFlow.
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            report.main([f"--model_dir={model_dir}", "--compare", other, f"--out_dir={out_dir}"])
        self.assertIn(f"wrote {os.path.join(out_dir, 'index.html')}", stdout.getvalue())
        with open(os.path.join(out_dir, "index.html")) as f:
            page = f.read()
        self.assertIn("other (uniform", page)  # The compared run has a row of its own.
        for name in FIGURES:
            self._check_png(os.path.join(out_dir, name))

    def test_report_of_a_run_without_selection_log_has_curves_only(self):
        tmp_dir = self.get_temp_dir()
        model_dir = self.model_dir
        bare = os.path.join(tmp_dir, "bare")
        os.makedirs(bare)
        shutil.copy(os.path.join(model_dir, "metrics.json"), bare)
        page = report.write_report(bare)
        with open(page) as f:
            referenced = re.findall(r'<img src="([^"]+)"', f.read())
        # Corruption from the train metric.
        self.assertEqual(referenced, ["accuracy.png", "corrupted.png"])
        with self.assertRaisesRegex(FileNotFoundError, "metrics.json"):
            report.write_report(os.path.join(tmp_dir, "missing"))

    @unittest.skipIf(not os.path.exists("/usr/bin/chromium"), "no headless Chromium")
    def test_report_renders_in_headless_chromium(self):
        tmp_dir = self.get_temp_dir()
        model_dir = self.model_dir
        shot = os.path.join(tmp_dir, "page.png")
        page = "file://" + os.path.abspath(os.path.join(model_dir, "report", "index.html"))
        cmd = ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu"]
        cmd += [f"--screenshot={shot}", "--window-size=1200,3000", page]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self._check_png(shot)


def _curve(steps, accuracies, flops_per_step=10.0):
    return [
        {"step": s, "learner_updates": s, "total_flops": s * flops_per_step, "test_accuracy": a}
        for s, a in zip(steps, accuracies, strict=True)
    ]


class AccuracyPlotTest(tf.test.TestCase):
    """The accuracy figure's data: from the first evaluation, and the spread over seeds."""

    def setUp(self):
        super().setUp()
        from active_keras.analysis import report

        self.report = report
        self.plt = report._plt()

    def test_plotted_curve_starts_at_the_first_evaluation(self):
        curve = _curve([0, 6, 12], [0.1, 0.5, 0.6])
        self.assertEqual(
            [p["step"] for p in self.report.trained_points(curve, "test_accuracy", "total_flops")],
            [6, 12],
        )
        fig, ax = self.plt.subplots()
        values = self.report.draw_curves(ax, [curve], "test_accuracy", "learner_updates", "run")
        self.assertEqual(values, [0.5, 0.6])
        self.assertEqual(list(ax.lines[0].get_xdata()), [6, 12])
        self.plt.close(fig)

    def test_spread_over_seeds_at_common_steps(self):
        curves = [
            _curve([0, 6, 12], [0.1, 0.5, 0.6]),
            _curve([0, 6, 12], [0.1, 0.3, 0.7]),
            _curve([0, 6, 9, 12], [0.1, 0.4, 0.45, 0.8]),  # Step 9 is not shared: left out.
        ]
        band = self.report.spread(curves, "test_accuracy", "total_flops")
        self.assertAllClose(band["x"], [60.0, 120.0])
        self.assertAllClose(band["mean"], [0.4, 0.7])
        self.assertAllClose(band["low"], [0.3, 0.6])
        self.assertAllClose(band["high"], [0.5, 0.8])
        self.assertIsNone(
            self.report.spread(
                [_curve([0, 5], [0.1, 0.2]), curves[0]], "test_accuracy", "total_flops"
            )
        )
        fig, ax = self.plt.subplots()
        values = self.report.draw_curves(ax, curves, "test_accuracy", "learner_updates", "seeds")
        self.assertLen(ax.lines, 1)  # The mean ...
        self.assertLen(ax.collections, 1)  # ... and its band.
        self.assertEqual(list(ax.lines[0].get_xdata()), [6, 12])
        self.assertEqual(ax.get_legend_handles_labels()[1], ["seeds (mean of 3 seeds)"])
        self.assertAllClose(sorted(values), [0.3, 0.5, 0.6, 0.8])
        self.plt.close(fig)

    def test_runs_differing_only_in_seed_are_one_group(self):
        def run(name, policy, seed):
            config = f"ActiveLearner.policy = '{policy}'\nrun.seed = {seed}\nrun.num_steps = 12\n"
            return {"name": name, "facts": {"policy": policy, "seed": seed}, "config": config}

        runs = [run("a0", "learnability", 0), run("u0", "uniform", 0), run("a1", "learnability", 1)]
        groups = self.report.group_by_config(runs)
        self.assertEqual([[r["name"] for r in g] for g in groups], [["a0", "a1"], ["u0"]])
        runs[2]["config"] = runs[2]["config"].replace("12", "24")  # Another budget: apart.
        self.assertLen(self.report.group_by_config(runs), 3)


if __name__ == "__main__":
    tf.test.main()
