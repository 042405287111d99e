"""The CLI under tf.distribute: Mirrored on two logical CPUs, MultiWorker with two processes."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

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


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


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
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    model_dir = os.path.join(tmp_path, "run")
    workers = [
        subprocess.Popen(
            _cmd(model_dir, ref, "--strategy=multi_worker_mirrored"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            ),
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out[-3000:]
    chief = keras.models.load_model(os.path.join(model_dir, "learner.keras"))
    other = keras.models.load_model(os.path.join(model_dir, "learner.worker1.keras"))
    for a, b in zip(chief.weights, other.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f)["curve"][-1]["step"] == 12
