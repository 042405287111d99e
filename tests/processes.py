"""A harness for tests that start processes: it polls all of them and never hangs.

Every test that starts more than one process (multi-worker runs) goes through
`ProcessGroup`: it writes each process's output to a log file, polls every
process, and as soon as one exits with an error, or the deadline passes, it
ends all the others (SIGTERM to the process group, SIGKILL after a short grace)
and fails with every process's output in the message.

Example:

```python
with ProcessGroup(log_dir) as group:
    for i in range(2):
        group.start(f"worker{i}", cmd, env=env_for(i))
    group.wait(timeout=600)  # All must exit 0; fails fast if one does not.
```
"""

import json
import os
import signal
import socket
import subprocess
import time

TAIL = 4000  # Characters of each process's output shown in a failure.


class ProcessFailure(AssertionError):
    """A process of the group failed or the deadline passed; holds every output."""


class ProcessGroup:
    """Processes started together, polled together and ended together.

    Args:
        log_dir: Where each process's combined stdout/stderr goes (`NAME.log`).
        grace: Seconds between SIGTERM and SIGKILL when ending a process.
        poll: Seconds between polls.
    """

    def __init__(self, log_dir, grace=5.0, poll=0.1):
        self.log_dir = str(log_dir)
        self.grace = grace
        self.poll = poll
        self.procs = {}
        self._logs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()
        return False

    def start(self, name, cmd, *, env=None, cwd=None):
        """Starts `cmd` as process `name` in its own session; returns the `Popen`."""
        if name in self.procs and self.procs[name].poll() is None:
            raise ValueError(f"process {name!r} is still running")
        os.makedirs(self.log_dir, exist_ok=True)
        path = os.path.join(self.log_dir, f"{name}.log")
        log = open(path, "w")  # noqa: SIM115 - closed in stop()/output().
        self._logs[name] = (log, path)
        self.procs[name] = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Its own process group: children are ended with it.
        )
        return self.procs[name]

    def output(self, name):
        """Everything process `name` has printed so far."""
        log, path = self._logs[name]
        log.flush()
        with open(path, errors="replace") as f:
            return f.read()

    def returncode(self, name):
        return self.procs[name].poll()

    def report(self, reason):
        """`reason` followed by each process's exit status and the tail of its output."""
        parts = [reason]
        for name, proc in self.procs.items():
            rc = proc.poll()
            status = "still running" if rc is None else f"exit status {rc}"
            parts.append(f"----- {name} ({status}) -----\n{self.output(name)[-TAIL:]}")
        return "\n".join(parts)

    def fail(self, reason):
        """Ends every process and raises `ProcessFailure` with all their output."""
        self.stop_all()
        raise ProcessFailure(self.report(reason))

    def _check(self, names, deadline, what):
        for name in names:
            rc = self.procs[name].poll()
            if rc is not None and rc != 0:
                self.fail(f"{name} exited with status {rc} while waiting for {what}")
        if time.time() > deadline:
            self.fail(f"deadline passed while waiting for {what}")

    def wait(self, timeout, names=None):
        """Waits until the processes `names` (default: all) have exited 0.

        Fails at once when one of them exits non-zero, or when `timeout`
        seconds pass; every process of the group is then ended.
        """
        names = list(names or self.procs)
        deadline = time.time() + timeout
        while True:
            self._check(names, deadline, f"{', '.join(names)} to finish")
            if all(self.procs[n].poll() == 0 for n in names):
                return
            time.sleep(self.poll)

    def wait_until(self, predicate, timeout, what="a condition"):
        """Waits until `predicate()` is true while every process is alive or exited 0.

        Fails at once when a process exits non-zero, or when `timeout` passes.
        """
        deadline = time.time() + timeout
        while not predicate():
            self._check(list(self.procs), deadline, what)
            time.sleep(self.poll)

    def wait_exit(self, name, timeout):
        """Waits for process `name` to exit, whatever its status, and returns the status.

        Fails, ending every process, when `timeout` seconds pass first.
        """
        deadline = time.time() + timeout
        while self.procs[name].poll() is None:
            if time.time() > deadline:
                self.fail(f"deadline passed while waiting for {name} to exit")
            time.sleep(self.poll)
        return self.procs[name].returncode

    def kill(self, name, sig=signal.SIGKILL):
        """Sends `sig` to process `name`'s group and waits for it to exit."""
        proc = self.procs[name]
        if proc.poll() is None:
            _signal_group(proc, sig)
        try:
            proc.wait(timeout=max(self.grace, 1.0) * 6)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()

    def stop(self, name):
        """SIGTERM, then SIGKILL after the grace period, to process `name`'s group."""
        proc = self.procs[name]
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        # Its children may outlive it in the group: make sure none is left.
        _signal_group(proc, signal.SIGKILL)
        self._logs[name][0].flush()

    def stop_all(self):
        for name in self.procs:
            self.stop(name)


def free_ports(n):
    """`n` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def local_cluster(n):
    """A `TF_CONFIG` cluster of `n` workers on fresh local ports."""
    return {"worker": [f"127.0.0.1:{p}" for p in free_ports(n)]}


def worker_env(cluster, index, **extra):
    """The environment of worker `index` of `cluster`: `TF_CONFIG`, quiet TensorFlow."""
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config, **extra}


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
