"""Run-level failures: a damaged reference file, and resuming under another schedule."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib
import io
import json

import gin
import pytest
import tensorflow as tf

from active_keras import main as main_lib
from active_keras import quiet
from active_keras.analysis import report
from active_keras.data import openclipart
from active_keras.training import checkpointing
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
        # One error line, the last: gin's "In call to configurable" context is not printed.
        last = proc.stderr.strip().splitlines()[-1]
        self.assertTrue(last.startswith("error: The reference file"), last)
        self.assertNotIn("In call to configurable", proc.stderr)

    @pytest.mark.slow  # One more CLI process.
    def test_a_checkpoint_of_another_configuration_exits_with_its_own_status(self):
        model_dir = _finished_uniform_run(self.get_temp_dir())
        proc = cli(
            self.get_temp_dir(),
            "--gin_file=gin/uniform.gin",
            f"--model_dir={model_dir}",
            bindings=[*TINY, "run.seed = 1"],
        )
        self.assertEqual(proc.returncode, checkpointing.EXIT_OTHER_RUN, proc.stderr[-3000:])
        last = proc.stderr.strip().splitlines()[-1]
        self.assertRegex(last, r"^error: The checkpoints in .* are of a run with seed=0")

    def test_cheap_preconditions_fail_before_training_naming_the_value(self):
        tmp = self.get_temp_dir()
        bindings = [*TINY, f"run.reference_path = '{tmp}/ref.h5'"]
        with self.assertRaisesRegex(ValueError, r"run.reference_path = '.*ref.h5' must end in"):
            main_lib.run_config([os.path.join(ROOT, "gin", "classact.gin")], bindings, tmp)
        self.assertFalse(os.path.exists(os.path.join(tmp, "ref.checkpoints")))  # Nothing trained.
        a_file = os.path.join(tmp, "a_file")
        open(a_file, "w").close()
        with self.assertRaisesRegex(FileExistsError, "is a file, not a folder"):
            main_lib.run_config(UNIFORM, TINY, a_file)

    def test_the_error_line_leaves_gin_context_out_or_puts_it_first(self):
        error = ValueError("run.x is wrong\n  In call to configurable 'run' (<function run>)")
        self.assertEqual(quiet.error_line(error), "error: run.x is wrong")
        verbose = quiet.error_line(error, verbose=True).splitlines()
        self.assertEqual(
            verbose, ["  In call to configurable 'run' (<function run>)", "error: run.x is wrong"]
        )

    def test_a_caption_file_that_is_not_utf8_is_named(self):
        image = os.path.join(self.get_temp_dir(), "cat.png")
        with open(os.path.join(self.get_temp_dir(), "cat.txt"), "wb") as f:
            f.write(b"caf\xff")
        with self.assertRaisesRegex(ValueError, r"caption file '.*cat.txt' is not UTF-8"):
            openclipart.caption_from_file(image)

    def test_report_cli_ends_with_one_error_line(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            status = report.main([f"--model_dir={self.get_temp_dir()}/none"])
        self.assertEqual(status, 1)
        self.assertRegex(stderr.getvalue().strip(), r"^error: .*metrics.json does not exist")

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
