"""Checks of `ActiveLearner` under `MirroredStrategy` on two logical CPU devices.

Run as a script (`python tests/distribute_checks.py CHECK ... --out result.json`)
in a fresh process: the two logical devices must be configured before
TensorFlow initialises its devices, which a pytest process running other test
files has long done. `tests/test_distribute.py` runs it and asserts on the JSON.

Every check returns a dict of measured numbers; none asserts by itself.
"""

import argparse
import json
import os
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from active_keras import ActiveLearner  # noqa: E402
from active_keras.data.classification import ImageClassificationData  # noqa: E402
from active_keras.models import cnn  # noqa: E402
from active_keras.training import distribute, replicas  # noqa: E402

GLOBAL_B = 32
STEPS = 4
_DATA = ImageClassificationData("digits", heldout_size=200)


def _architectures():
    learner = cnn.cnn_classifier((8, 8, 1), 10, widths=(8,), dense_units=16, name="learner")
    reference = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=8, name="reference")
    actor = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=8, name="actor")
    return learner, reference, actor


keras.utils.set_random_seed(0)
_INITIAL = [m.get_weights() for m in _architectures()]


def _dataset():
    # Unshuffled, repeated: the same global super-batches for every run.
    return _DATA.dataset("train", GLOBAL_B, shuffle=False, repeat=True)


def _train(
    strategy,
    policy="learnability",
    selection="topk",
    scope="global",
    steps=STEPS,
    selector=None,
    jit_scoring=False,
    seed=3,
    data=None,
):
    """Fits `steps` steps from fixed initial weights; returns (model, learner+actor weights)."""
    with strategy.scope():
        models = _architectures()
        for model, weights in zip(models, _INITIAL, strict=True):
            model.set_weights(weights)
        learner, reference, actor = models
        model = ActiveLearner(
            learner,
            reference,
            actor=actor if policy == "learnability" else None,
            policy=policy,
            selection=selector or selection,
            keep_fraction=0.5,
            selection_scope=scope,
            jit_scoring=jit_scoring,
            seed=seed,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            actor_optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    history = model.fit(data or _dataset(), steps_per_epoch=steps, epochs=1, verbose=0)
    weights = learner.get_weights() + (actor.get_weights() if model.actor is not None else [])
    return model, weights, history.history


def _max_diff(a, b):
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b, strict=True)))


def _mirrored():
    return distribute.make_strategy("mirrored")


def _one_device():
    return distribute.make_strategy("one_device", devices=["/cpu:0"])


def per_half_topk(scores, k, temperature=1.0, seed=None):
    """One device emulating local selection on two replicas: top-k/2 within each half."""
    del temperature, seed
    halves = tf.reshape(scores, [2, -1])
    index = tf.math.top_k(halves, k=k // 2).indices
    return tf.reshape(index + tf.constant([[0], [GLOBAL_B // 2]]), [-1])


def check_global_topk(policy):
    """Mirrored global top-k vs one device on the same global super-batches."""
    _, one, _ = _train(_one_device(), policy)
    model, mirrored, hist = _train(_mirrored(), policy, scope="global")
    return {
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "global_vs_one_device": _max_diff(one, mirrored),
        "loss": hist["loss"][-1],
    }


def check_local_topk(policy):
    """Mirrored local top-k vs one device selecting top-k/2 within each half."""
    _, emulated, _ = _train(_one_device(), policy, selector=per_half_topk)
    model, local, _ = _train(_mirrored(), policy, scope="local")
    _, global_, _ = _train(_mirrored(), policy, scope="global")
    return {
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "local_vs_emulated": _max_diff(emulated, local),
        # How far the other scope lands: shows the comparisons can tell them apart.
        "global_vs_emulated": _max_diff(emulated, global_),
    }


def check_global_sample():
    """Gumbel sampling: same global choice on each replica, equal to one device."""
    _, one, _ = _train(_one_device(), selection="sample")
    strategy = _mirrored()
    model, mirrored, _ = _train(strategy, selection="sample", scope="global")
    states = [
        v.numpy().tolist()
        for v in strategy.experimental_local_results(model.seed_generator.state.value)
    ]

    def selections(scope):
        model.selection_scope = scope

        @tf.function
        def run():
            def replica_fn():
                ctx = tf.distribute.get_replica_context()
                # Different scores on each replica, as in training.
                local = tf.random.stateless_uniform(
                    [GLOBAL_B // 2], seed=tf.stack([ctx.replica_id_in_sync_group, 7])
                )
                if scope == "global":
                    return replicas.select_globally(
                        ctx, lambda s, c: model.select(s, GLOBAL_B // 2, c), local, None
                    )[1]
                return model.select(tf.zeros([GLOBAL_B // 2]), GLOBAL_B // 4)

            return strategy.run(replica_fn)

        return [t.numpy().tolist() for t in strategy.experimental_local_results(run())]

    global_choice, local_choice = selections("global"), selections("local")
    return {
        "sample_vs_one_device": _max_diff(one, mirrored),
        "seed_states": states,
        "global_choice_per_replica": global_choice,
        "local_choice_per_replica": local_choice,
    }


def check_jit_scoring():
    """XLA-compiled per-replica scoring under MirroredStrategy vs one device (no XLA).

    Uses rho_loss (learner forward passes in scoring). The caller sets
    `XLA_FLAGS=--xla_dump_to=DIR`; the dumped modules show what XLA compiled.
    """
    _, plain, _ = _train(_one_device(), "rho_loss")
    _, jitted, hist = _train(_mirrored(), "rho_loss", scope="global", jit_scoring=True)
    dump = os.environ.get("XLA_FLAGS", "").partition("--xla_dump_to=")[2].split(" ")[0]
    modules = sorted(os.listdir(dump)) if dump and os.path.isdir(dump) else []
    return {
        "jit_vs_plain": _max_diff(plain, jitted),
        "loss": hist["loss"][-1],
        "xla_modules": [m for m in modules if m.endswith(".before_optimizations.txt")],
    }


def check_policies(scope):
    """One short run per policy under MirroredStrategy; the final loss."""
    from active_keras.selection import policies

    out = {}
    for policy in ("uniform", "hard_learner", "easy_reference", "learnability", "rho_loss"):
        assert policy in policies.names()
        _, weights, hist = _train(_mirrored(), policy, selection="sample", scope=scope, steps=2)
        out[policy] = {
            "loss": hist["loss"][-1],
            "finite": bool(np.all([np.isfinite(w).all() for w in weights])),
        }
    return out


def check_distributed_input():
    """`classification_super_batches` feeds fit() per-replica shards."""
    strategy = _mirrored()
    train = distribute.classification_super_batches(strategy, _DATA, GLOBAL_B)
    batch = next(iter(train))
    shapes = [list(t.shape) for t in strategy.experimental_local_results(batch[0])]
    model, weights, hist = _train(strategy, scope="global", data=train, steps=2)
    return {"per_replica_shapes": shapes, "loss": hist["loss"][-1], "metrics": sorted(hist)}


CHECKS = {
    "global_topk_learnability": lambda: check_global_topk("learnability"),
    "global_topk_rho_loss": lambda: check_global_topk("rho_loss"),
    "global_topk_easy_reference": lambda: check_global_topk("easy_reference"),
    "local_topk_learnability": lambda: check_local_topk("learnability"),
    "global_sample": check_global_sample,
    "jit_scoring": check_jit_scoring,
    "policies_global": lambda: check_policies("global"),
    "policies_local": lambda: check_policies("local"),
    "distributed_input": check_distributed_input,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checks", nargs="+", choices=sorted(CHECKS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = {}
    for name in args.checks:
        start = time.time()
        try:
            results[name] = {"ok": True, **CHECKS[name]()}
        except Exception as e:  # Reported per check; the test shows the message.
            traceback.print_exc()
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.time() - start, 2)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
