"""Shared command-line helpers for the end-to-end tests.

Test modules import these from here instead of from each other, so that every
test file stands alone (and is its own Bazel `py_test`).
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Digits (8x8) with small CNNs: a real run of the whole pipeline in seconds.
TINY = [
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
    "train_reference.num_steps = 10",
    "train_reference.jit_compile = False",
]
# TINY for the tf.distribute runs (same super batch, stated once more so that it can change alone).
BINDINGS = [b for b in TINY if "super_batch_size" not in b] + ["run.super_batch_size = 32"]


def env(**extra):
    """The environment for a child process: the test's own, with TensorFlow quiet."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def cli(tmp_dir, *args, bindings=TINY, environ=None):
    """Runs `python -m active_keras.main` with the reference kept in `tmp_dir`.

    Args:
      tmp_dir: Where the reference goes.
      *args: Command-line flags.
      bindings: Gin bindings.
      environ: The child's environment (default `env()`, TensorFlow quiet).

    Returns:
      The finished `subprocess.CompletedProcess`, output captured as text.
    """
    ref = os.path.join(tmp_dir, "reference.keras")
    cmd = [sys.executable, "-m", "active_keras.main", *args]
    cmd += [f"--gin_bindings={b}" for b in bindings + [f"run.reference_path = '{ref}'"]]
    return subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environ or env()
    )


def cmd(model_dir, ref, *flags, bindings=BINDINGS):
    """The ClassAct CLI command line for `model_dir`, with the reference at `ref`."""
    cmd = [
        sys.executable,
        "-m",
        "active_keras.main",
        "--gin_file=gin/classact.gin",
        f"--model_dir={model_dir}",
        *flags,
    ]
    return cmd + [f"--gin_bindings={b}" for b in bindings + [f"run.reference_path = '{ref}'"]]


def pretrain_reference(tmp_dir):
    """Trains the reference once, so that every worker loads the same file.

    Returns:
      The reference model's path.

    Raises:
      AssertionError: the reference run failed (its stderr's tail is the message).
    """
    ref = os.path.join(tmp_dir, "ref.keras")
    proc = subprocess.run(
        cmd(os.path.join(tmp_dir, "ref_run"), ref) + ["--gin_file=gin/reference.gin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    if proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return ref
