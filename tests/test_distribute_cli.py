"""The CLI under tf.distribute: Mirrored on two logical CPUs, MultiWorker with two processes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.processes import ProcessGroup, local_cluster, worker_env
from tests.test_cli import ROOT, TINY

BINDINGS = [b for b in TINY if "super_batch_size" not in b] + ["run.super_batch_size = 32"]


def _cmd(model_dir, ref, *flags, bindings=BINDINGS):
    cmd = [
        sys.executable,
        "-m",
        "active_keras.main",
        "--gin_file=gin/classact.gin",
        f"--model_dir={model_dir}",
        *flags,
    ]
    return cmd + [f"--gin_bindings={b}" for b in bindings + [f"run.reference_path = '{ref}'"]]


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


@pytest.mark.slow
def test_mirrored_cli_run_on_two_logical_cpus(tmp_path):
    ref = os.path.join(tmp_path, "ref.keras")
    proc = subprocess.run(
        _cmd(os.path.join(tmp_path, "run"), ref, "--strategy=mirrored", "--logical_cpus=2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(tmp_path, "run", "metrics.json")) as f:
        curve = json.load(f)["curve"]
    assert [p["step"] for p in curve] == [0, 6, 12]
    assert np.isfinite(curve[-1]["test_accuracy"])


def _pretrain_reference(tmp_path):
    """Trains the reference once, so that every worker loads the same file."""
    ref = os.path.join(tmp_path, "ref.keras")
    proc = subprocess.run(
        _cmd(os.path.join(tmp_path, "ref_run"), ref) + ["--gin_file=gin/reference.gin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ref


@pytest.mark.slow
def test_multi_worker_cli_run_ends_with_identical_weights(tmp_path):
    ref = _pretrain_reference(tmp_path)
    cluster = local_cluster(2)
    model_dir = os.path.join(tmp_path, "run")
    with ProcessGroup(tmp_path / "logs") as workers:
        for i in range(2):
            workers.start(
                f"worker{i}",
                _cmd(model_dir, ref, "--strategy=multi_worker_mirrored"),
                cwd=ROOT,
                env=worker_env(cluster, i),
            )
        workers.wait(timeout=900)  # Fails at once, with both outputs, if a worker fails.
    chief = keras.models.load_model(os.path.join(model_dir, "learner.keras"))
    other = keras.models.load_model(os.path.join(model_dir, "learner.worker1.keras"))
    for a, b in zip(chief.weights, other.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f)["curve"][-1]["step"] == 12


@pytest.mark.slow
def test_a_worker_whose_peer_never_starts_exits_naming_it(tmp_path):
    # Worker 1 of a two-worker cluster, alone: it must not wait without end.
    cluster = local_cluster(2)
    cmd = _cmd(os.path.join(tmp_path, "run"), os.path.join(tmp_path, "ref.keras"))
    cmd += ["--strategy=multi_worker_mirrored", "--peer_timeout=60"]
    with ProcessGroup(tmp_path / "logs") as workers:
        workers.start("worker1", cmd, cwd=ROOT, env=worker_env(cluster, 1))
        # Start-up (TensorFlow's import), then 60 s: about 80 s on an idle 2-core machine.
        status = workers.wait_exit("worker1", timeout=240)
        out = workers.output("worker1")
    assert status != 0, out[-3000:]
    expected = (
        "error: the multi-worker cluster did not come together within 60 s: "
        f"worker 0 ({cluster['worker'][0]}) is not reachable"
    )
    assert expected in out, out[-3000:]
