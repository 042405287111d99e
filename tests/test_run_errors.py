"""Run-level failures: a damaged reference file, and resuming under another schedule."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json

import gin
import tensorflow as tf

from active_keras import main as main_lib
from tests.cli_helpers import ROOT, cli, copy_of, tiny_run
from tests.cli_helpers import TINY as CLI_TINY

TINY = [*CLI_TINY, "run.write_report = False"]
UNIFORM = [os.path.join(ROOT, "gin", "uniform.gin")]


def _finished_uniform_run(tmp_dir):
    """A copy of a finished 12-step `UNIFORM` run on `TINY`, to resume.

    The uniform baseline of the shared tiny CLI run: `gin/classact.gin` then
    `gin/uniform.gin` leave the same run as `UNIFORM` alone (the report aside).
    """
    _, model_dir, _ = tiny_run()
    return copy_of(os.path.join(model_dir, "baseline"), tmp_dir)


class RunErrorsTest(tf.test.TestCase):
    def tearDown(self):
        gin.clear_config()
        super().tearDown()

    def test_a_truncated_reference_file_is_an_error_naming_it(self):
        ref = os.path.join(self.get_temp_dir(), "reference.keras")  # Where `cli` looks.
        with open(ref, "wb") as f:
            f.write(b"PK\x03\x04 truncated")  # The start of a zip file, and nothing else.
        proc = cli(
            self.get_temp_dir(),
            "--gin_file=gin/classact.gin",
            f"--model_dir={self.get_temp_dir()}/run",
            bindings=TINY,
        )
        self.assertEqual(proc.returncode, 1, proc.stderr[-3000:])
        self.assertIn(f"error: The reference file '{ref}' cannot be loaded", proc.stderr)
        self.assertIn("Delete it to train the reference again", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)

    def test_resuming_with_another_learning_rate_is_refused_naming_it(self):
        model_dir = _finished_uniform_run(self.get_temp_dir())
        with self.assertRaisesRegex(ValueError, "learning_rate=0.00100.*learning_rate=0.00200"):
            main_lib.run_config(UNIFORM, TINY + ["make_optimizer.learning_rate = 2e-3"], model_dir)
        with self.assertRaisesRegex(ValueError, "learning_rate=.*CosineDecay"):
            main_lib.run_config(UNIFORM, TINY + ["make_optimizer.schedule = 'cosine'"], model_dir)

    def test_a_larger_num_steps_extends_a_finished_constant_rate_run(self):
        model_dir = _finished_uniform_run(self.get_temp_dir())
        main_lib.run_config(UNIFORM, TINY + ["run.num_steps = 18"], model_dir)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            self.assertEqual([p["step"] for p in json.load(f)["curve"]], [0, 6, 12, 18])


if __name__ == "__main__":
    tf.test.main()
