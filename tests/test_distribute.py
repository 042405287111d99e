"""Tests of `active_keras.distribute` and `ActiveLearner` under `tf.distribute` and mixed precision.

Two logical CPU devices must be configured before TensorFlow initialises its
devices, which happens long before this file runs when pytest runs other test
files in the same process; so the `MirroredStrategy` checks run in a fresh
subprocess (`tests/distribute_checks.py`), once per module, and the tests here
assert on its JSON results. The multi-worker test starts two worker processes
(`tests/multi_worker_worker.py`) on local ports.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from active_keras import ActiveLearner, distribute
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn
from tests.processes import ProcessGroup, local_cluster, worker_env

HERE = os.path.dirname(os.path.abspath(__file__))
POLICIES = ("uniform", "hard_learner", "easy_reference", "learnability", "rho_loss")
TOL = 1e-5  # float32 sums in another order; a different selection moves weights by > 1e-3.


def _run_checks(tmp_path, names, env=None):
    out = tmp_path / "checks.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "distribute_checks.py"), *names, "--out", str(out)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0 and out.exists(), proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mirrored")
    dump = tmp / "xla_dump"
    names = [
        "global_topk_learnability",
        "local_topk_learnability",
        "global_sample",
        "jit_scoring",
        "distributed_input",
    ]
    return _run_checks(tmp, names, env={"XLA_FLAGS": f"--xla_dump_to={dump}"})


def _ok(results, name):
    result = results[name]
    assert result["ok"], result.get("error")
    return result


def test_global_topk_matches_one_device(mirrored):
    result = _ok(mirrored, "global_topk_learnability")
    assert result["replicas"] == 2
    assert result["global_vs_one_device"] < TOL
    assert np.isfinite(result["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["rho_loss", "easy_reference"])
def test_global_topk_matches_one_device_other_policies(tmp_path, policy):
    result = _ok(_run_checks(tmp_path, [f"global_topk_{policy}"]), f"global_topk_{policy}")
    assert result["global_vs_one_device"] < TOL


def test_local_topk_matches_per_replica_selection(mirrored):
    result = _ok(mirrored, "local_topk_learnability")
    assert result["local_vs_emulated"] < TOL
    # On this data the two scopes select differently: the comparison can fail.
    assert result["global_vs_emulated"] > 1e-3


def test_global_sampling_is_the_same_on_every_replica(mirrored):
    result = _ok(mirrored, "global_sample")
    first, second = result["global_choice_per_replica"]
    assert first == second and len(set(first)) == len(first)
    assert max(first) >= 16  # Winners come from both replicas' halves.
    assert min(first) < 16
    assert result["sample_vs_one_device"] < TOL
    states = result["seed_states"]
    assert len(states) == 2 and states[0] == states[1]
    # Local sampling draws independent noise on each replica.
    local_first, local_second = result["local_choice_per_replica"]
    assert local_first != local_second


def test_jit_scoring_compiles_scoring_on_each_replica(mirrored):
    result = _ok(mirrored, "jit_scoring")
    assert result["jit_vs_plain"] < TOL  # rho_loss, against one device without XLA.
    scoring = [m for m in result["xla_modules"] if "_score_" in m]
    assert len(scoring) == 2, result["xla_modules"]  # One XLA computation per replica.


def test_distributed_input_gives_each_replica_its_part(mirrored):
    result = _ok(mirrored, "distributed_input")
    assert result["per_replica_shapes"] == [[16, 8, 8, 1], [16, 8, 8, 1]]
    assert np.isfinite(result["loss"])
    assert "selected_corrupted" in result["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["global", "local"])
def test_every_policy_runs_under_mirrored(tmp_path, scope):
    result = _ok(_run_checks(tmp_path, [f"policies_{scope}"]), f"policies_{scope}")
    for policy in POLICIES:
        assert result[policy]["finite"] and np.isfinite(result[policy]["loss"]), policy


@pytest.mark.slow
def test_multi_worker_mirrored_workers_agree(tmp_path):
    cluster = local_cluster(2)
    with ProcessGroup(tmp_path / "logs") as workers:
        for index in range(2):
            script = os.path.join(HERE, "multi_worker_worker.py")
            out = str(tmp_path / f"worker{index}.npz")
            workers.start(
                f"worker{index}",
                [sys.executable, script, "--out", out],
                env=worker_env(cluster, index),
            )
        workers.wait(timeout=300)  # Fails at once, with both outputs, if a worker fails.
    w0, w1 = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert int(w0["replicas"]) == 2
    weights = [k for k in w0.files if k.startswith(("learner_", "actor_"))]
    assert weights
    for key in weights + ["seed_state"]:
        np.testing.assert_allclose(w0[key], w1[key], atol=1e-6, err_msg=key)
    # Each worker read its own shard.
    assert not set(w0["first_ids"].tolist()) & set(w1["first_ids"].tolist())
    assert np.isfinite(w0["loss"])


# ------------------------------------------------------------ in-process tests


def test_make_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match="Unknown strategy 'horovod'.*one_device"):
        distribute.make_strategy("horovod")


def test_make_strategy_one_device():
    strategy = distribute.make_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1


def test_distribute_super_batches_needs_an_even_split():
    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="does not split evenly"):
        distribute.distribute_super_batches(TwoReplicas(), lambda: None, 33)


def test_selection_scope_is_checked():
    learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0)
    with pytest.raises(ValueError, match="selection_scope"):
        ActiveLearner(learner, policy="uniform", selection_scope="everywhere")


@pytest.fixture
def restore_float32():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def digits():
    return ImageClassificationData("digits", heldout_size=200)


@pytest.mark.parametrize("dtype_policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_precision_step(digits, restore_float32, dtype_policy, policy):
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
    assert np.isfinite(history.history["loss"][-1])
    assert any(np.any(a != b) for a, b in zip(before, learner.get_weights(), strict=True))

    x, y, _ = next(iter(ds))
    scores, context = model.score(x, y)
    assert scores.dtype == tf.float32 and bool(tf.reduce_all(tf.math.is_finite(scores)))
    assert set(context["outputs"]) == set(model.policy.requires)
    reference_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    for name, outputs in context["outputs"].items():
        assert outputs.dtype == compute, name  # The policy is in effect ...
        loss = context["losses"][name]
        assert loss.dtype == tf.float32
        # ... and the selection loss is computed in float32, not merely cast to it.
        expected = reference_loss(y, tf.cast(outputs, tf.float32))
        np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)

    if dtype_policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        if model.actor is not None:
            assert isinstance(model.actor_optimizer, keras.optimizers.LossScaleOptimizer)
    if model.actor is not None:
        assert "actor_loss" in history.history
