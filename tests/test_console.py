"""A clean first run: what the command line prints, and TensorFlow's start-up log kept quiet.

The end-to-end checks run their child processes with TF_CPP_MIN_LOG_LEVEL
removed from the environment (the test scripts set it), so that they see what a
new user sees.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logging
import re
import subprocess

import tensorflow as tf
from absl.testing import parameterized

from active_keras import quiet
from active_keras.training import callbacks
from tests.cli_helpers import ROOT, cli

# What TensorFlow 2.21 prints on a CPU machine when nothing quiets it (seen on this machine).
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796094958.987564    5550 port.cc:153] oneDNN custom operations are on. You may see.
I0000 00:00:1796094958.987866    5550 cudart_stub.cc:31] Could not find cuda drivers on your \
machine, GPU will not be used.
I0000 00:00:1796094959.058056    5550 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.
W0000 00:00:1796094959.100000    5550 some_op.cc:12] A C++ warning.
/x/y.py:3: UserWarning: a Python warning while importing
  warnings.warn("a Python warning while importing")
E0000 00:00:1796094968.362785    5550 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA \
error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1796094968.400000    5550 other.cc:7] A C++ error that matters.
"""
# Lines a quiet run must not print (TensorFlow's log), and Keras's per-epoch progress.
NOISE = (
    "port.cc",
    "cudart_stub",
    "cpu_feature_guard",
    "cuInit",
    "oneDNN",
    "absl::InitializeLog",
    "Sharding callback duration",
    "is deprecated",
    "Epoch ",
)
CPP_RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ", re.M)


def _env_without_log_level(**extra):
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", quiet.VERBOSE_ENV)
    }
    return dict(env, **extra)


class FilterStartupTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("level_2", 2, ["UserWarning", "warnings.warn", "A C++ error that matters"]),
        (
            "level_1",
            1,
            ["A C++ warning", "UserWarning", "warnings.warn", "cuInit", "A C++ error that matters"],
        ),
        ("level_3", 3, ["UserWarning", "warnings.warn"]),
    )
    def test_drops_records_below_the_level_and_keeps_the_rest(self, level, kept):
        out = quiet.filter_startup(STARTUP, level)
        lines = out.splitlines()
        self.assertLen(lines, len(kept))
        for line, expected in zip(lines, kept, strict=True):
            self.assertIn(expected, line)

    def test_level_0_keeps_everything(self):
        self.assertEqual(quiet.filter_startup(STARTUP, 0), STARTUP)

    def test_cuinit_error_is_kept_when_cuda_drivers_were_found(self):
        text = "\n".join(ln for ln in STARTUP.splitlines() if "cudart_stub" not in ln) + "\n"
        self.assertIn("failed call to cuInit", quiet.filter_startup(text, 2))


class PythonLogsTest(tf.test.TestCase):
    def _record(self, path, level, msg, args=()):
        return logging.LogRecord("tensorflow", level, path, 1, msg, args, None)

    def test_internal_info_and_deprecations_are_dropped_others_kept(self):
        roots = ["/site/tensorflow/", "/site/keras/"]
        f = quiet._TensorFlowInternals(roots)
        notice = "From %s: %s (from %s) is deprecated and will be removed %s."
        self.assertFalse(f.filter(self._record("/site/tensorflow/a.py", logging.INFO, "Sharding")))
        self.assertTrue(f.filter(self._record("/work/active_keras/d.py", logging.INFO, "ours")))
        self.assertTrue(f.filter(self._record("/site/keras/a.py", logging.WARNING, "a warning")))
        internal = ("/site/tensorflow/python/ops/nn_ops.py:5261", "f", "m", "soon")
        self.assertFalse(f.filter(self._record("/site/x.py", logging.WARNING, notice, internal)))
        users = ("/home/me/model.py:12", "f", "m", "soon")
        self.assertTrue(f.filter(self._record("/site/x.py", logging.WARNING, notice, users)))

    def test_verbose_requested(self):
        env = {k: v for k, v in os.environ.items() if k != quiet.VERBOSE_ENV}
        with tf.compat.v1.test.mock.patch.dict(os.environ, env, clear=True):
            self.assertTrue(quiet.verbose_requested(["--gin_file=x", "--verbose"]))
            self.assertFalse(quiet.verbose_requested(["--gin_file=x", "--noverbose"]))
            os.environ[quiet.VERBOSE_ENV] = "1"
            self.assertTrue(quiet.verbose_requested([]))


class StartTest(parameterized.TestCase):
    """`quiet.start()` in a fresh process: TensorFlow's own start-up lines, and their switches."""

    def _start(self, verbose, **env):
        code = (
            "import os, sys\n"
            "from active_keras import quiet\n"
            f"quiet.start(verbose={verbose})\n"
            "import tensorflow as tf\n"
            "tf.constant(1.0) + 1.0\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env=_env_without_log_level(**env),
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        return proc

    def test_quiet_by_default_and_loud_on_request(self):
        loud = self._start(verbose=True)
        if not CPP_RECORD.search(loud.stderr):
            self.skipTest("This TensorFlow prints no C++ start-up lines.")
        self.assertEqual(loud.stdout.strip(), "None")  # Verbose: the environment is untouched.
        quiet_run = self._start(verbose=False)
        self.assertEqual(quiet_run.stdout.strip(), quiet.DEFAULT_CPP_LEVEL)
        self.assertEqual(quiet_run.stderr, "")
        # A level the user sets is theirs: 0 asks for every C++ line.
        explicit = self._start(verbose=False, TF_CPP_MIN_LOG_LEVEL="0")
        self.assertEqual(explicit.stdout.strip(), "0")
        self.assertRegex(explicit.stderr, CPP_RECORD)


class ProgressLineTest(tf.test.TestCase):
    def test_line_has_step_metric_loss_flops_and_eta(self):
        point = {
            "step": 1500,
            "test_accuracy": 0.81123,
            "train_loss": 0.548,
            "total_flops": 3.21e12,
        }
        line = callbacks.progress_line(point, "test_accuracy", 3000, elapsed=130.2, eta=129.6)
        self.assertEqual(
            line,
            "step 1500/3000: test_accuracy 0.8112, train loss 0.5480, 3.21 TFLOPs, "
            "0:02:10 elapsed, ETA 0:02:10",
        )

    def test_line_without_total_or_times(self):
        point = {"step": 0, "zero_shot_accuracy": 0.25, "total_flops": 0}
        self.assertEqual(
            callbacks.progress_line(point, "zero_shot_accuracy"),
            "step 0: zero_shot_accuracy 0.2500, 0 FLOPs",
        )

    def test_format_flops(self):
        self.assertEqual(callbacks.format_flops(20.8e6), "20.8 MFLOPs")
        self.assertEqual(callbacks.format_flops(1.5e15), "1.5 PFLOPs")
        self.assertEqual(callbacks.format_flops(512), "512 FLOPs")


class CleanCliRunTest(tf.test.TestCase):
    def test_cli_prints_progress_and_results_not_tensorflow_log(self):
        tmp_dir = self.get_temp_dir()
        model_dir = os.path.join(tmp_dir, "run")
        proc = cli(
            tmp_dir,
            "--gin_file=gin/classact.gin",
            f"--model_dir={model_dir}",
            environ=_env_without_log_level(),
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        printed = proc.stdout + proc.stderr
        for noise in NOISE:
            self.assertNotIn(noise, printed)
        self.assertNotRegex(printed, CPP_RECORD)
        self.assertEqual(proc.stderr, "")
        lines = proc.stdout.splitlines()
        self.assertIn(f"run: classact in {model_dir}", lines)
        self.assertTrue(any(ln.startswith("reference: test_accuracy") for ln in lines), lines)
        progress = [ln for ln in lines if ln.startswith("step ")]
        # One line per evaluation (TINY: 12 steps, evaluated every 6), with step, accuracy,
        # FLOPs so far and an ETA once training has started.
        self.assertLen(progress, 3, lines)
        self.assertRegex(progress[0], r"^step 0/12: test_accuracy \d\.\d{4}, .*FLOPs")
        for line, step in zip(progress[1:], (6, 12), strict=True):
            self.assertRegex(
                line,
                rf"^step {step}/12: test_accuracy \d\.\d{{4}}, train loss \d+\.\d{{4}}, "
                r"[\d.]+ \w?FLOPs, \d+:\d\d:\d\d elapsed, ETA \d+:\d\d:\d\d$",
            )
        self.assertTrue(progress[-1].endswith("ETA 0:00:00"))
        self.assertIn(f"report: {model_dir}/report/index.html", lines)


if __name__ == "__main__":
    tf.test.main()
