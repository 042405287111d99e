"""Multi-worker peers from `TF_CONFIG`: which are reachable, and a deadline for joining them.

Standard library only: `start_deadline` runs this file as a small watchdog
process (a Python thread cannot do it: while a worker joins the cluster,
TensorFlow's runtime holds the interpreter lock until every peer has joined).

Example:

```python
from active_keras.training import peers

with peers.start_deadline(600):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
print(peers.describe_lost())  # After a collective failed: who is gone.
```
"""

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys


def cluster_peers(tf_config=None):
    """`[(name, address)]` of the other tasks of the cluster in `TF_CONFIG`."""
    config = json.loads(tf_config if tf_config is not None else os.environ.get("TF_CONFIG") or "{}")
    me = config.get("task", {})
    out = []
    for job, addresses in config.get("cluster", {}).items():
        for index, address in enumerate(addresses):
            if (job, index) != (me.get("type"), me.get("index")):
                out.append((f"{job} {index}", address))
    return out


def unreachable(tf_config=None, timeout=2.0):
    """The peers (`"worker 0 (host:port)"`) that do not accept a connection now."""
    missing = []
    for name, address in cluster_peers(tf_config):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError:
            missing.append(f"{name} ({address})")
    return missing


def describe_lost(tf_config=None):
    """A sentence naming the peers that are gone (for an error after a failed wait)."""
    missing = unreachable(tf_config)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"{', '.join(missing)} {verb} not reachable: exited, or never started."
    names = ", ".join(f"{n} ({a})" for n, a in cluster_peers(tf_config)) or "no peer"
    return f"every peer ({names}) is reachable, but one did not respond in time."


@contextlib.contextmanager
def start_deadline(timeout):
    """Ends this process with `error: ...` unless the block is over within `timeout` seconds.

    A watchdog process waits on a pipe; leaving the block closes it. If the
    deadline passes first, the watchdog finds which peers cannot be reached,
    checks the pipe once more (a worker that joined meanwhile is spared), then
    prints the error and kills this process (SIGKILL: a process blocked in
    TensorFlow's runtime answers nothing else; TensorFlow's preemption notifier
    catches SIGTERM). It holds a pidfd of this process where the system has
    them, so a recycled PID is never hit, and runs in a session of its own, so
    that Ctrl-C reaches only this process. The command line runs a
    multi-worker worker under a supervising parent (`active_keras.main`),
    which exits 1 after such a kill.
    """
    watchdog = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid()), str(timeout)],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield
    finally:
        watchdog.stdin.close()  # EOF: the block is over in time.
        watchdog.wait()


def _open_pidfd(pid):
    """A pidfd of `pid` (Linux 5.3+), or None: it names that process, never a reused PID."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _watch(parent, timeout):
    pidfd = _open_pidfd(parent)  # Now, while the parent surely lives (it waits on this pipe).
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        return  # The parent closed the pipe (or exited): nothing to do.
    message = (
        f"error: the multi-worker cluster did not come together within {timeout:g} s: "
        f"{describe_lost()} Start every worker of TF_CONFIG, or raise --peer_timeout."
    )
    # Looking for the peers takes seconds: a worker that joined meanwhile is not killed.
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    if ready:
        return
    if pidfd is None and os.getppid() != parent:
        return  # The parent is gone (this process was re-parented): its PID may be reused.
    print(message, file=sys.stderr, flush=True)
    if pidfd is not None:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    else:
        os.kill(parent, signal.SIGKILL)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]))
