"""Run-level failures: a damaged reference file, and resuming under another schedule."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import subprocess

import gin
import tensorflow as tf

from active_keras import main as main_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [  # Digits with small CNNs: a whole run in seconds.
    "ImageClassificationData.name = 'digits'",
    "ImageClassificationData.heldout_size = 300",
    "ImageClassificationData.label_noise = 0.2",
    "learner/cnn_classifier.widths = (8, 16)",
    "small/cnn_classifier.widths = (4,)",
    "small/cnn_classifier.dense_units = 0",
    "run.super_batch_size = 32",
    "run.num_steps = 12",
    "run.eval_every = 6",
    "run.jit_compile = False",
    "run.write_report = False",
    "train_reference.num_steps = 10",
    "train_reference.jit_compile = False",
]
CLASSACT = [os.path.join(ROOT, "gin", "classact.gin")]
UNIFORM = [os.path.join(ROOT, "gin", "uniform.gin")]


class RunErrorsTest(tf.test.TestCase):
    def tearDown(self):
        gin.clear_config()
        super().tearDown()

    def test_a_truncated_reference_file_is_an_error_naming_it(self):
        ref = os.path.join(self.get_temp_dir(), "reference.keras")
        with open(ref, "wb") as f:
            f.write(b"PK\x03\x04 truncated")  # The start of a zip file, and nothing else.
        cmd = [sys.executable, "-m", "active_keras.main", "--gin_file=gin/classact.gin"]
        cmd += [f"--model_dir={self.get_temp_dir()}/run"]
        cmd += [f"--gin_bindings={b}" for b in TINY + [f"run.reference_path = '{ref}'"]]
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
        self.assertIn(f"error: The reference file '{ref}' cannot be loaded", proc.stderr)
        self.assertIn("Delete it to train the reference again", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)

    def test_resuming_with_another_learning_rate_is_refused_naming_it(self):
        model_dir = os.path.join(self.get_temp_dir(), "run")
        main_lib.run_config(UNIFORM, TINY, model_dir)
        with self.assertRaisesRegex(ValueError, "learning_rate=0.00100.*learning_rate=0.00200"):
            main_lib.run_config(UNIFORM, TINY + ["make_optimizer.learning_rate = 2e-3"], model_dir)
        with self.assertRaisesRegex(ValueError, "learning_rate=.*CosineDecay"):
            main_lib.run_config(UNIFORM, TINY + ["make_optimizer.schedule = 'cosine'"], model_dir)

    def test_a_larger_num_steps_extends_a_finished_constant_rate_run(self):
        model_dir = os.path.join(self.get_temp_dir(), "run")
        main_lib.run_config(UNIFORM, TINY, model_dir)
        main_lib.run_config(UNIFORM, TINY + ["run.num_steps = 18"], model_dir)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            self.assertEqual([p["step"] for p in json.load(f)["curve"]], [0, 6, 12, 18])


if __name__ == "__main__":
    tf.test.main()
