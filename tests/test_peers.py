"""Multi-worker peers: who is reachable, and the deadline for joining a cluster."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import signal
import socket
import subprocess
import textwrap
import time
from unittest import mock

import tensorflow as tf

from active_keras.training import peers
from tests.processes import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The child processes load `active_keras/training/peers.py` by its path: it needs the standard
# library only, and `import active_keras` would import TensorFlow (seconds of start-up).
PEERS = os.path.join(ROOT, "active_keras", "training", "peers.py")
LOAD_PEERS = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("peers", {PEERS!r})
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)
"""


def _tf_config(addresses, index):
    return json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    )


class PeersTest(tf.test.TestCase):
    def test_cluster_peers_are_the_other_tasks(self):
        config = _tf_config(["h0:1", "h1:2", "h2:3"], 1)
        self.assertEqual(peers.cluster_peers(config), [("worker 0", "h0:1"), ("worker 2", "h2:3")])

    def test_unreachable_names_only_the_peer_that_is_not_listening(self):
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            up = f"127.0.0.1:{listening.getsockname()[1]}"
            down = f"127.0.0.1:{free_ports(1)[0]}"
            config = _tf_config([up, "127.0.0.1:1", down], 1)
            self.assertEqual(peers.unreachable(config), [f"worker 2 ({down})"])
            self.assertEqual(
                peers.describe_lost(config),
                f"worker 2 ({down}) is not reachable: exited, or never started.",
            )

    def test_start_deadline_ends_a_process_stuck_past_it_naming_the_missing_peer(self):
        down = f"127.0.0.1:{free_ports(1)[0]}"
        code = LOAD_PEERS + textwrap.dedent(
            """
            import time
            with peers.start_deadline(2):
                time.sleep(120)
            """
        )
        env = {**os.environ, "TF_CONFIG": _tf_config([down, "127.0.0.1:9"], 1)}
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
        )
        self.assertLess(time.time() - start, 60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(
            f"error: the multi-worker cluster did not come together within 2 s: worker 0 ({down})",
            proc.stderr,
        )

    def test_start_deadline_does_nothing_when_the_block_ends_in_time(self):
        code = LOAD_PEERS + textwrap.dedent(
            """
            import time
            with peers.start_deadline(3):
                pass
            time.sleep(5)  # Past the deadline: the watchdog must be gone.
            print("still here")
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=100
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertIn("still here", proc.stdout)

    def test_the_watchdog_spares_a_worker_that_joins_while_it_looks_for_the_peers(self):
        read, write = os.pipe()

        def joined(*args):
            os.close(write)  # The worker leaves the block while the peers are probed.
            return "worker 0 (h:1) is not reachable"

        with (
            open(read) as stdin,
            mock.patch.object(sys, "stdin", stdin),
            mock.patch.object(peers, "describe_lost", side_effect=joined),
            mock.patch.object(os, "kill") as kill,
            mock.patch.object(signal, "pidfd_send_signal") as pidfd_kill,
        ):
            peers._watch(os.getpid(), 0.1)
        kill.assert_not_called()
        pidfd_kill.assert_not_called()


if __name__ == "__main__":
    tf.test.main()
