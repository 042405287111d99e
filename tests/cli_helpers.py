"""Shared command-line helpers for the end-to-end tests, and the runs they share.

Test modules import these from here instead of from each other, so that every
test file stands alone (and is its own Bazel `py_test`).

Several test files only read the outputs of the same tiny CLI run (or need a
trained reference and do not care how it was made). `tiny_run()` and
`tiny_reference()` build these once into a cache (`cached`), keyed by the
command and a hash of the package source, so that the fast and the slow tier,
and every file within them, share one build. Tests that modify the outputs copy
them first (`copy_of`).
"""

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from active_keras import files

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


def cli_command(tmp_dir, *args, bindings=TINY):
    """`python -m active_keras.main ARGS` with the reference kept in `tmp_dir`."""
    ref = os.path.join(tmp_dir, "reference.keras")
    cmd = [sys.executable, "-m", "active_keras.main", *args]
    return cmd + [f"--gin_bindings={b}" for b in bindings + [f"run.reference_path = '{ref}'"]]


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
    cmd = cli_command(tmp_dir, *args, bindings=bindings)
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
    """A reference trained alone (`gin/reference.gin`), so that every worker loads the same file.

    Trained once into the cache (`cached`); each caller gets a copy of its own.

    Returns:
      The copy's path, `tmp_dir/ref.keras`.

    Raises:
      AssertionError: the reference run failed (its stderr's tail is the message).
    """

    def build(folder):
        command = cmd(os.path.join(folder, "ref_run"), os.path.join(folder, "ref.keras"))
        run_or_raise(command + ["--gin_file=gin/reference.gin"], folder)

    folder = cached("reference_run", build, key=[BINDINGS, "gin/reference.gin"])
    return shutil.copy(os.path.join(folder, "ref.keras"), os.path.join(tmp_dir, "ref.keras"))


# The cache of shared builds; one folder per build, `NAME-SOURCE-KEY`.
# In the user's own cache, not a fixed folder of /tmp that another user could create first.
CACHE_DIR = os.environ.get("ACTIVE_KERAS_TEST_CACHE") or os.path.join(
    files.cache_root(), "test_builds"
)
STALE_SECONDS = 24 * 3600  # Builds of other sources older than this are removed.


def source_hash():
    """A hash of what a build depends on: the package, the gin files and the library versions."""
    h = hashlib.sha256()
    for folder in ("active_keras", "gin"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, folder)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith((".py", ".gin")):
                    path = os.path.join(dirpath, name)
                    h.update(os.path.relpath(path, ROOT).encode() + b"\0")
                    with open(path, "rb") as f:
                        h.update(f.read() + b"\0")
    h.update(sys.version.encode())
    for package in ("tensorflow", "keras", "numpy"):
        h.update(importlib.metadata.version(package).encode())
    return h.hexdigest()[:16]


def cached(name, build, key=()):
    """The folder of a shared build, made by `build(folder)` on first use.

    Two pytest processes (`pytest -n 2`, or two runs at once) may ask at once: a
    lock file makes the second wait for the first's build instead of repeating
    it, and each build goes into a fresh folder that is renamed into place only
    when complete, so that no caller ever sees half a build, even after a crash.
    Callers must not modify the folder: copy it first (`copy_of`).

    Args:
        name: A short name of the build (part of the folder's name).
        build: Called with an empty folder to fill; raises if the build fails.
        key: JSON-serialisable facts the build depends on besides the package
            source (its command line, say).

    Returns:
        The path of the complete build.
    """
    source = source_hash()
    digest = hashlib.sha256(json.dumps([name, key]).encode()).hexdigest()[:12]
    final = os.path.join(CACHE_DIR, f"{name}-{source}-{digest}")
    os.makedirs(os.path.dirname(os.path.abspath(CACHE_DIR)), exist_ok=True)
    files.private_dir(CACHE_DIR)  # Refuses another user's folder: its builds could be planted.
    with open(f"{final}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes (or the process dies).
        if os.path.isdir(final):
            os.utime(final)  # In use: not stale.
            return final
        _remove_stale(source)
        partial = tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE_DIR)
        try:
            build(partial)
            os.rename(partial, final)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _remove_stale(source):
    """Removes the builds (and lock files) of other package sources unused for a day."""
    for entry in os.listdir(CACHE_DIR):
        path = os.path.join(CACHE_DIR, entry)
        try:
            old = time.time() - os.path.getmtime(path) > STALE_SECONDS
        except OSError:
            continue  # Removed meanwhile.
        if old and f"-{source}-" not in entry:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)


def copy_of(folder, tmp_dir):
    """A copy of the cached `folder` in `tmp_dir`, for a test that modifies it."""
    return shutil.copytree(folder, os.path.join(tmp_dir, os.path.basename(folder)))


def run_or_raise(cmd, folder=None):
    """Runs `cmd` in the repository; with `folder`, writes its stdout to `folder/stdout.txt`.

    Returns:
      The finished `subprocess.CompletedProcess`, output captured as text.

    Raises:
      AssertionError: the command failed (its stderr's tail is the message).
    """
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env())
    if proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    if folder:
        with open(os.path.join(folder, "stdout.txt"), "w") as f:
            f.write(proc.stdout)
    return proc


def tiny_run():
    """The tiny ClassAct CLI run with its uniform comparison, shared by the tests that read it.

    `python -m active_keras.main --gin_file=gin/classact.gin --compare_with=gin/uniform.gin`
    on `TINY`, which trains its reference into its own file first. Read only.

    Returns:
      `(folder, model_dir, stdout)`: the reference is `folder/reference.keras`, the
      run's outputs are in `model_dir` (the baseline's in `model_dir/baseline`).
    """
    args = ["--gin_file=gin/classact.gin", "--compare_with=gin/uniform.gin"]

    def build(folder):
        run_or_raise(
            cli_command(folder, *args, f"--model_dir={os.path.join(folder, 'run')}"), folder
        )

    folder = cached("tiny_run", build, key=[args, TINY])
    with open(os.path.join(folder, "stdout.txt")) as f:
        stdout = f.read()
    return folder, os.path.join(folder, "run"), stdout


def tiny_reference(tmp_dir, name="reference.keras"):
    """A copy, in `tmp_dir`, of the reference `TINY` trains (that of `tiny_run()`).

    Returns:
      The copy's path: the caller's own file, which its runs may load or replace.
    """
    folder, _, _ = tiny_run()
    return shutil.copy(os.path.join(folder, "reference.keras"), os.path.join(tmp_dir, name))
