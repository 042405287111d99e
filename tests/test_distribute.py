"""Tests of `training.distribute` and `ActiveLearner` under `tf.distribute` and mixed precision.

Two logical CPU devices must be configured before TensorFlow initialises its
devices, which happens long before this file runs when pytest runs other test
files in the same process; so the `MirroredStrategy` checks run in a fresh
subprocess (`tests/distribute_checks.py`), once per test class, and the tests here
assert on its JSON results. The multi-worker test starts two worker processes
(`tests/multi_worker_worker.py`) on local ports.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import pathlib
import shutil
import subprocess
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from active_keras import ActiveLearner
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from active_keras.training import distribute
from tests.processes import ProcessGroup, local_cluster, worker_env

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = ("uniform", "hard_learner", "easy_reference", "learnability", "rho_loss")
TOL = 1e-5  # float32 sums in another order; a different selection moves weights by > 1e-3.


def _run_checks(tmp_path, names, env=None):
    """Runs `tests/distribute_checks.py NAMES` in a fresh process; returns its JSON results."""
    out = pathlib.Path(tmp_path) / "checks.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "distribute_checks.py"), *names, "--out", str(out)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    # Raised, not asserted with a TestCase: setUpClass runs this too.
    if not (proc.returncode == 0 and out.exists()):
        raise AssertionError(proc.stderr[-4000:])
    return json.loads(out.read_text())


def _ok(test, results, name):
    """`results[name]`, once `test` has asserted that the check passed."""
    result = results[name]
    test.assertTrue(result["ok"], result.get("error"))
    return result


class MirroredChecksTest(tf.test.TestCase):
    """Checks of one `tests/distribute_checks.py` process, run once for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="mirrored"))
        cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
        dump = tmp / "xla_dump"
        names = [
            "global_topk_learnability",
            "local_topk_learnability",
            "global_sample",
            "jit_scoring",
            "distributed_input",
        ]
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump}".strip()
        cls.mirrored = _run_checks(tmp, names, env={"XLA_FLAGS": flags})

    def test_global_topk_matches_one_device(self):
        mirrored = self.mirrored
        result = _ok(self, mirrored, "global_topk_learnability")
        self.assertEqual(result["replicas"], 2)
        self.assertLess(result["global_vs_one_device"], TOL)
        self.assertTrue(np.isfinite(result["loss"]))

    def test_local_topk_matches_per_replica_selection(self):
        mirrored = self.mirrored
        result = _ok(self, mirrored, "local_topk_learnability")
        self.assertLess(result["local_vs_emulated"], TOL)
        # On this data the two scopes select differently: the comparison can fail.
        self.assertGreater(result["global_vs_emulated"], 0.001)

    def test_global_sampling_is_the_same_on_every_replica(self):
        mirrored = self.mirrored
        result = _ok(self, mirrored, "global_sample")
        first, second = result["global_choice_per_replica"]
        self.assertEqual(first, second)
        self.assertEqual(len(set(first)), len(first))
        self.assertGreaterEqual(max(first), 16)  # Winners come from both replicas' halves.
        self.assertLess(min(first), 16)
        self.assertLess(result["sample_vs_one_device"], TOL)
        states = result["seed_states"]
        self.assertEqual(len(states), 2)
        self.assertEqual(states[0], states[1])
        # Local sampling draws independent noise on each replica.
        local_first, local_second = result["local_choice_per_replica"]
        self.assertNotEqual(local_first, local_second)

    def test_jit_scoring_compiles_scoring_on_each_replica(self):
        mirrored = self.mirrored
        result = _ok(self, mirrored, "jit_scoring")
        self.assertLess(result["jit_vs_plain"], TOL)  # rho_loss, against one device without XLA.
        scoring = [m for m in result["xla_modules"] if "_score_" in m]
        self.assertEqual(len(scoring), 2, result["xla_modules"])  # One XLA computation per replica.

    def test_distributed_input_gives_each_replica_its_part(self):
        mirrored = self.mirrored
        result = _ok(self, mirrored, "distributed_input")
        self.assertEqual(result["per_replica_shapes"], [[16, 8, 8, 1], [16, 8, 8, 1]])
        self.assertTrue(np.isfinite(result["loss"]))
        self.assertIn("selected_corrupted", result["metrics"])


class SlowMirroredChecksTest(parameterized.TestCase, tf.test.TestCase):
    """The slow checks, of one more `tests/distribute_checks.py` process run once for the class.

    Started by the first test that needs it, not in `setUpClass`: the fast tier runs this
    class's (skipped) `test_session`, and must not start the process for it.
    """

    mirrored = None

    def _checks(self):
        cls = type(self)
        if cls.mirrored is None:
            tmp = pathlib.Path(tempfile.mkdtemp(prefix="mirrored_slow"))
            cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
            names = ["global_topk_rho_loss", "global_topk_easy_reference"]
            cls.mirrored = _run_checks(tmp, names + ["policies_global", "policies_local"])
        return cls.mirrored

    @parameterized.named_parameters(("rho_loss", "rho_loss"), ("easy_reference", "easy_reference"))
    @pytest.mark.slow  # Under the parameters: each generated case keeps the mark.
    def test_global_topk_matches_one_device_other_policies(self, policy):
        result = _ok(self, self._checks(), f"global_topk_{policy}")
        self.assertLess(result["global_vs_one_device"], TOL)

    @parameterized.named_parameters(("global", "global"), ("local", "local"))
    @pytest.mark.slow  # Under the parameters: each generated case keeps the mark.
    def test_every_policy_runs_under_mirrored(self, scope):
        result = _ok(self, self._checks(), f"policies_{scope}")
        for policy in POLICIES:
            self.assertTrue(result[policy]["finite"], policy)
            self.assertTrue(np.isfinite(result[policy]["loss"]), policy)


class DistributeTest(parameterized.TestCase, tf.test.TestCase):
    @pytest.mark.slow
    def test_multi_worker_mirrored_workers_agree(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        cluster = local_cluster(2)
        with ProcessGroup(tmp_dir / "logs") as workers:
            for index in range(2):
                script = os.path.join(HERE, "multi_worker_worker.py")
                out = str(tmp_dir / f"worker{index}.npz")
                workers.start(
                    f"worker{index}",
                    [sys.executable, script, "--out", out],
                    env=worker_env(cluster, index),
                )
            workers.wait(timeout=300)  # Fails at once, with both outputs, if a worker fails.
        w0, w1 = (np.load(tmp_dir / f"worker{i}.npz") for i in range(2))
        self.assertEqual(int(w0["replicas"]), 2)
        weights = [k for k in w0.files if k.startswith(("learner_", "actor_"))]
        self.assertTrue(weights)
        for key in weights + ["seed_state"]:
            np.testing.assert_allclose(w0[key], w1[key], atol=1e-6, err_msg=key)
        # Each worker read its own shard.
        self.assertFalse(set(w0["first_ids"].tolist()) & set(w1["first_ids"].tolist()))
        self.assertTrue(np.isfinite(w0["loss"]))

    # ------------------------------------------------------------ in-process tests

    def test_make_strategy_rejects_unknown_names(self):
        with self.assertRaisesRegex(ValueError, "Unknown strategy 'horovod'.*one_device"):
            distribute.make_strategy("horovod")

    def test_make_strategy_one_device(self):
        strategy = distribute.make_strategy("one_device")
        self.assertIsInstance(strategy, tf.distribute.OneDeviceStrategy)
        self.assertEqual(strategy.num_replicas_in_sync, 1)

    def test_distribute_super_batches_needs_an_even_split(self):
        class TwoReplicas:
            num_replicas_in_sync = 2

        with self.assertRaisesRegex(ValueError, "does not split evenly"):
            distribute.distribute_super_batches(TwoReplicas(), lambda: None, 33)

    def test_selection_scope_is_checked(self):
        learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0)
        with self.assertRaisesRegex(ValueError, "selection_scope"):
            ActiveLearner(learner, policy="uniform", selection_scope="everywhere")


class MixedPrecisionTest(parameterized.TestCase, tf.test.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.digits = ImageClassificationData("digits", heldout_size=200)

    def tearDown(self):
        keras.mixed_precision.set_global_policy("float32")  # Other tests expect the default.
        super().tearDown()

    @parameterized.named_parameters(
        (f"{policy}_{dtype_policy}", dtype_policy, policy)
        for policy in POLICIES
        for dtype_policy in ("mixed_bfloat16", "mixed_float16")
    )
    def test_mixed_precision_step(self, dtype_policy, policy):
        digits = self.digits
        keras.mixed_precision.set_global_policy(dtype_policy)
        compute = keras.mixed_precision.global_policy().compute_dtype
        learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(8,), dense_units=16, name="learner")
        reference = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=8, name="ref")
        model = ActiveLearner(learner, reference, policy=policy, selection="sample", seed=0)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        before = [w.copy() for w in learner.get_weights()]
        ds = digits.dataset("train", 32, repeat=True)
        history = model.fit(ds, steps_per_epoch=2, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][-1]))
        self.assertTrue(
            any(np.any(a != b) for a, b in zip(before, learner.get_weights(), strict=True))
        )

        x, y, _ = next(iter(ds))
        scores, context = model.score(x, y)
        self.assertEqual(scores.dtype, tf.float32)
        self.assertTrue(bool(tf.reduce_all(tf.math.is_finite(scores))))
        self.assertEqual(set(context["outputs"]), set(model.policy.requires))
        reference_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
        for name, outputs in context["outputs"].items():
            self.assertEqual(outputs.dtype, compute, name)  # The policy is in effect ...
            loss = context["losses"][name]
            self.assertEqual(loss.dtype, tf.float32)
            # ... and the selection loss is computed in float32, not merely cast to it.
            expected = reference_loss(y, tf.cast(outputs, tf.float32))
            np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)

        if dtype_policy == "mixed_float16":
            self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
            if model.actor is not None:
                self.assertIsInstance(model.actor_optimizer, keras.optimizers.LossScaleOptimizer)
        if model.actor is not None:
            self.assertIn("actor_loss", history.history)


if __name__ == "__main__":
    tf.test.main()
