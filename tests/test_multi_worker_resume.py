"""A MultiWorkerMirrored CLI run killed mid-way resumes from its last checkpoint.

Two local worker processes (TF_CONFIG on 127.0.0.1) train; once the chief has
written a checkpoint, worker 1 is SIGKILLed (the chief then hangs in, or fails
out of, its next collective) and the chief is killed too. Restarting both with
the same command must resume from the chief's last checkpoint, not from step 0,
reach the configured final step, leave both workers with identical learners,
and write a metric curve without duplicated points.
"""

import json
import os
import signal
import subprocess
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_cli import ROOT
from tests.test_distribute_cli import BINDINGS, _cmd, _env, _free_ports, _pretrain_reference

NUM_STEPS = 24
RUN = [b for b in BINDINGS if not b.startswith(("run.num_steps", "run.eval_every"))] + [
    f"run.num_steps = {NUM_STEPS}",
    "run.eval_every = 6",
    "run.checkpoint_every = 3",
]


def _command(model_dir, ref):
    return _cmd(model_dir, ref, "--strategy=multi_worker_mirrored", bindings=RUN)


def _latest_step(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return None if path is None else int(path.rsplit("-", 1)[1])


def _start_workers(cmd, cluster, log_dir, tag):
    workers, logs = [], []
    for i in range(2):
        log_path = os.path.join(log_dir, f"{tag}.worker{i}.log")
        log = open(log_path, "w")  # noqa: SIM115 - closed by the caller.
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        workers.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(TF_CONFIG=tf_config),
            )
        )
        logs.append((log, log_path))
    return workers, logs


def _read(log_path):
    with open(log_path) as f:
        return f.read()


def _kill(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.slow
def test_killed_multi_worker_run_resumes_from_its_last_checkpoint(tmp_path):
    tmp_path = str(tmp_path)
    ref = _pretrain_reference(tmp_path)  # Both workers, both runs, load the same file.

    model_dir = os.path.join(tmp_path, "run")
    cmd = _command(model_dir, ref)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    everything = []
    try:
        # --- First run: killed once the chief has a checkpoint.
        workers, logs = _start_workers(cmd, cluster, tmp_path, "first")
        everything += workers
        deadline = time.time() + 600
        while (
            (_latest_step(model_dir) or 0) < 3
            and all(w.poll() is None for w in workers)
            and time.time() < deadline
        ):
            time.sleep(0.05)
        alive = [w.poll() is None for w in workers]
        _kill(workers[1])
        time.sleep(1.0)  # The chief now hangs in (or fails out of) its next collective.
        _kill(workers[0])
        for log, _ in logs:
            log.close()
        first_out = [_read(p) for _, p in logs]
        assert all(alive), "a worker ended before it could be killed:\n" + "\n----\n".join(
            o[-3000:] for o in first_out
        )
        at_kill = _latest_step(model_dir)
        assert at_kill is not None and 3 <= at_kill < NUM_STEPS, (at_kill, first_out[0][-3000:])

        # --- Second run: both workers restarted with the same command.
        # Fresh ports: the killed workers' ports may not be free again yet, as after a real
        # preemption the restarted cluster may also come back at other addresses.
        cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
        workers, logs = _start_workers(cmd, cluster, tmp_path, "resumed")
        everything += workers
        deadline = time.time() + 900
        for w in workers:
            try:
                w.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for w in workers:
            _kill(w)  # Only if one is still running past the deadline.
        for log, _ in logs:
            log.close()
        outs = [_read(p) for _, p in logs]
        for i, (w, out) in enumerate(zip(workers, outs, strict=True)):
            assert w.returncode == 0, f"worker {i} (rc={w.returncode}):\n{out[-3000:]}"
    finally:
        for w in everything:
            _kill(w)

    # Resumed from the chief's last checkpoint, not from step 0.
    resumed_from = os.path.join(model_dir, "checkpoints", f"ckpt-{at_kill}")
    assert f"checkpoint: resumed from {resumed_from} at step {at_kill}" in outs[0], outs[0][-3000:]
    assert f"at step {at_kill}" in outs[1], outs[1][-3000:]
    assert _latest_step(model_dir) == NUM_STEPS

    with open(os.path.join(model_dir, "metrics.json")) as f:
        steps = [p["step"] for p in json.load(f)["curve"]]
    assert steps == [0, 6, 12, 18, 24]  # No duplicated or missing points.

    chief = keras.models.load_model(os.path.join(model_dir, "learner.keras"))
    other = keras.models.load_model(os.path.join(model_dir, "learner.worker1.keras"))
    for a, b in zip(chief.weights, other.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
