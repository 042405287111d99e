"""The process harness of the multi-process tests fails fast and leaves nothing running."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import textwrap
import time

import tensorflow as tf

from tests.processes import ProcessFailure, ProcessGroup


def _python(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


SLEEPER = """
    import time
    print("sleeper: waiting for its peer", flush=True)
    time.sleep(600)
"""
# Like a TensorFlow worker, whose preemption notifier catches SIGTERM and carries on.
STUBBORN = """
    import signal, time
    signal.signal(signal.SIGTERM, lambda *a: print("stubborn: ignoring SIGTERM", flush=True))
    print("stubborn: waiting", flush=True)
    time.sleep(600)
"""
CRASHER = """
    import sys, time
    time.sleep(1)
    print("crasher: giving up", flush=True)
    sys.exit(1)
"""


class ProcessGroupTest(tf.test.TestCase):
    def test_one_process_failing_fails_the_wait_fast_with_both_outputs(self):
        start = time.time()
        with ProcessGroup(self.get_temp_dir(), grace=2.0) as group:
            group.start("sleeper", _python(SLEEPER))
            # The sleeper's output must be in the message: on a loaded machine its start-up can
            # take longer than the crasher's second.
            group.wait_until(lambda: "waiting" in group.output("sleeper"), 60, "start-up")
            start = time.time()
            group.start("crasher", _python(CRASHER))
            with self.assertRaises(ProcessFailure) as caught:
                group.wait(timeout=600)
            sleeper = group.procs["sleeper"]
        self.assertLess(time.time() - start, 30)
        message = str(caught.exception)
        self.assertIn("crasher exited with status 1", message)
        self.assertIn("crasher: giving up", message)
        self.assertIn("sleeper: waiting for its peer", message)
        self.assertIsNotNone(sleeper.poll())  # Ended, not orphaned.

    def test_deadline_ends_a_process_that_ignores_sigterm(self):
        start = time.time()
        with ProcessGroup(self.get_temp_dir(), grace=1.0) as group:
            group.start("stubborn", _python(STUBBORN))
            group.wait_until(lambda: "waiting" in group.output("stubborn"), 60, "start-up")
            with self.assertRaises(ProcessFailure) as caught:
                group.wait(timeout=2)
            stubborn = group.procs["stubborn"]
        self.assertLess(time.time() - start, 30)
        self.assertIn("deadline passed", str(caught.exception))
        self.assertEqual(stubborn.poll(), -9)  # SIGTERM was ignored: SIGKILL after the grace.

    def test_wait_until_fails_fast_when_a_process_dies(self):
        with ProcessGroup(self.get_temp_dir(), grace=1.0) as group:
            group.start("sleeper", _python(SLEEPER))
            group.start("crasher", _python(CRASHER))
            start = time.time()
            with self.assertRaises(ProcessFailure) as caught:
                group.wait_until(lambda: False, 600, "a checkpoint")
        self.assertLess(time.time() - start, 30)
        self.assertIn("while waiting for a checkpoint", str(caught.exception))

    def test_successful_processes_and_their_output(self):
        with ProcessGroup(self.get_temp_dir()) as group:
            for i in range(2):
                group.start(f"p{i}", _python(f"print('hello from {i}')"), env=dict(os.environ))
            group.wait(timeout=60)
            self.assertEqual(group.returncode("p0"), 0)
            self.assertIn("hello from 1", group.output("p1"))


if __name__ == "__main__":
    tf.test.main()
