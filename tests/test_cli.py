"""The command line end to end on tiny real data, and its errors."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import gin
import tensorflow as tf

from active_keras import main as main_lib
from tests.cli_helpers import ROOT, TINY, tiny_run
from tests.cli_helpers import cli as _cli


class CliTest(tf.test.TestCase):
    def test_tiny_classact_run_with_uniform_comparison(self):
        # The CLI run shared with other tests; its build fails if the command does.
        tmp_dir, model_dir, stdout = tiny_run()
        self.assertIn("Comparison", stdout)
        self.assertIn("update speedup", stdout)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        curve = metrics["curve"]
        self.assertEqual([p["step"] for p in curve], [0, 6, 12])
        point = curve[-1]
        for key in (
            "learner_updates",
            "examples_drawn",
            "examples_trained",
            "learner_flops",
            "actor_flops",
            "reference_flops",
            "total_flops",
            "test_accuracy",
        ):
            self.assertIn(key, point)
        self.assertEqual(point["examples_drawn"], 12 * 32)
        self.assertEqual(point["examples_trained"], 12 * 16)
        self.assertEqual(
            point["total_flops"],
            sum(point[f"{m}_flops"] for m in ("learner", "actor", "reference")),
        )
        self.assertTrue(0 <= point["train_selected_corrupted"] <= 1)
        self.assertEqual(metrics["policy"], "learnability")
        with open(os.path.join(model_dir, "operative_config.gin")) as f:
            self.assertIn("ActiveLearner.policy = 'learnability'", f.read())
        self.assertTrue(os.listdir(os.path.join(model_dir, "tb")))
        self.assertTrue(os.path.exists(os.path.join(model_dir, "learner.keras")))
        self.assertTrue(os.path.exists(os.path.join(tmp_dir, "reference.keras")))  # Its own file.
        with open(os.path.join(model_dir, "baseline", "metrics.json")) as f:
            baseline = json.load(f)
        self.assertEqual(baseline["policy"], "uniform")
        self.assertNotIn("actor_flops", baseline["curve"][-1])

    def test_bad_gin_binding_is_named(self):
        tmp_dir = self.get_temp_dir()
        proc = _cli(
            tmp_dir,
            "--gin_file=gin/classact.gin",
            f"--model_dir={tmp_dir}/x",
            bindings=["run.num_stepz = 3"],
        )
        self.assertEqual(proc.returncode, 1)
        self.assertIn("Bad gin binding 'run.num_stepz = 3'", proc.stderr)

    def test_in_process_errors(self):
        tmp_dir = self.get_temp_dir()
        gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
        with self.assertRaisesRegex(main_lib.ConfigError, "Gin file 'nope.gin' does not exist"):
            main_lib.parse_config(["nope.gin"], [])
        with self.assertRaisesRegex(main_lib.ConfigError, "Bad gin binding 'NoSuchThing.x = 1'"):
            main_lib.parse_config(gin_files, ["NoSuchThing.x = 1"])
        locked = os.path.join(tmp_dir, "locked")
        os.makedirs(locked)
        os.chmod(locked, 0o500)
        try:
            if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file.
                locked = os.path.join(gin_files[0], "sub")
            with self.assertRaisesRegex(PermissionError, "model_dir .* is not writable"):
                main_lib.run_config(gin_files, TINY, os.path.join(locked, "run"))
        finally:
            gin.clear_config()
            os.chmod(os.path.join(tmp_dir, "locked"), 0o700)

    def test_missing_data_package_error_says_how_to_install(self):
        tmp_dir = self.get_temp_dir()
        gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
        bindings = [f"ImageClassificationData.data_dir = '{tmp_dir}/none'"]
        try:
            with self.assertRaisesRegex(
                FileNotFoundError, "apt-get install -y dataset-fashion-mnist"
            ):
                main_lib.run_config(gin_files, bindings, os.path.join(tmp_dir, "run"))
        finally:
            gin.clear_config()

    def test_nan_loss_stops_the_cli_naming_the_step(self):
        tmp_dir = self.get_temp_dir()
        proc = _cli(
            tmp_dir,
            "--gin_file=gin/uniform.gin",
            f"--model_dir={tmp_dir}/nan",
            bindings=TINY + ["make_optimizer.learning_rate = 1e12", "make_optimizer.name = 'sgd'"],
        )
        self.assertEqual(proc.returncode, 1, proc.stdout[-2000:])
        self.assertIn("error: The loss is", proc.stderr)
        self.assertIn("at step", proc.stderr)


if __name__ == "__main__":
    tf.test.main()
