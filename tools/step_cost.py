r"""Step-cost benchmark: measured wall time per training step against the FLOP ledger.

For a learner about 10x and about 100x the actor's forward FLOPs (sizes picked
with `flops.forward_flops`), it times, in one process and interleaved:

- `plain`: a plain Keras learner, `compile(jit_compile=True)`, batches of `b`;
- `uniform`: `ActiveLearner(policy="uniform")` on super-batches of `B = 2b`;
- `learnability_2b`, `learnability_4b`, `learnability_10b`:
  `ActiveLearner(policy="learnability", selection="sample")` at `B = 2b`, `4b`
  and `10b` (the actor and reference are the small model);
- `learnability_{2,4,10}b_precomputed`: the same with precomputed reference
  losses looked up by `example_id` (`ActiveLearner(reference_losses=...)`), so
  the reference's forward pass over `B` is gone. `precomputed_vs_computed`
  reports, per `B`, the median and range over rounds of the per-round ratio of
  the two, beside the ratio the FLOP ledger predicts.

Every variant is XLA-compiled on one device. The data is one pre-staged batch
repeated (`Dataset.from_tensors(...).repeat()`), so the input pipeline is not
measured. Each variant's compiled train function (what `fit()` calls once per
step) is timed over windows of steps after warm-up; windows of all variants are
interleaved round by round, and the reported numbers are medians over rounds
(ratios are medians of per-round ratios), which is robust to other processes
on a shared machine.

The actor's parts are also timed alone (its train step at `b`, its forward
pass at `2b` and `4b`); the plain learner step plus these parts gives a
"parts-timed" prediction of each learnability step. Measured against it, the
ratio shows what the `ActiveLearner` step itself adds; the ledger's FLOP
prediction differs from it where small convolutions run at fewer FLOP/s.

Usage:

  python tools/benchmark.py --suite=step_cost            # writes benchmarks/results/step_cost.*
  python tools/benchmark.py --suite=step_cost --smoke    # seconds, for CI
  python tools/step_cost.py --out_dir=/tmp/sc --rounds=9 --window=20
"""

import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

INPUT_SHAPE = (28, 28, 1)  # Fashion-MNIST-shaped images.
NUM_CLASSES = 10
# The ClassAct learner of gin/fashion_mnist.gin; the actor (and reference) is sized around it.
LEARNER = {"widths": (32, 64), "dense_units": 64}
# Actor sizes tried when matching a target learner / actor FLOP ratio; the first is the
# small model of gin/fashion_mnist.gin (about 13x below the learner).
ACTOR_CANDIDATES = [
    {"widths": (8, 16), "dense_units": 24},
    {"widths": (4, 8), "dense_units": 16},
    {"widths": (3, 6), "dense_units": 8},
    {"widths": (2, 4), "dense_units": 8},
    {"widths": (2, 2), "dense_units": 0},
    {"widths": (1, 2), "dense_units": 0},
]
TARGET_RATIOS = (10, 100)
FACTORS = (2, 4, 10)  # Super-batch sizes B = factor * b of the learnability variants.


def _cnn(widths, dense_units, name):
    from active_keras.models import cnn

    return cnn.cnn_classifier(INPUT_SHAPE, NUM_CLASSES, widths, dense_units, name=name)


def pick_actors(targets=TARGET_RATIOS, learner=None):
    """For each target ratio, the actor whose forward FLOPs put the learner closest (log scale).

    Returns:
        `(learner_flops, {target: (actor_spec, actor_flops)})`.
    """
    import math

    from active_keras.analysis import flops

    learner = learner or LEARNER
    learner_flops = flops.forward_flops(_cnn(name="learner", **learner))
    measured = [
        (spec, flops.forward_flops(_cnn(name="small", **spec))) for spec in ACTOR_CANDIDATES
    ]
    picked = {
        target: min(measured, key=lambda m: abs(math.log(learner_flops / m[1] / target)))
        for target in targets
    }
    return learner_flops, picked


def _data(batch_size, with_metadata, seed=0):
    """One random batch, repeated: staged in memory so that input costs ~nothing."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int64)
    batch = (x, y)
    if with_metadata:  # What the task's train split yields.
        ids = np.arange(batch_size, dtype=np.int64)
        batch = (x, y, {"corrupted": rng.random(batch_size) < 0.2, "example_id": ids})
    return tf.data.Dataset.from_tensors(batch).repeat()


def _train_step_fn(model, iterator):
    """A step callable of `model`'s compiled train function (what `fit()` runs per step)."""
    model.make_train_function()

    def step():
        logs = model.train_function(iterator)
        if hasattr(logs, "get_value"):  # An Optional, depending on the Keras version.
            logs = logs.get_value()
        return logs["loss"]

    return step


def _forward_step_fn(model, batch_size):
    """A step callable of an XLA-compiled forward pass (what scoring runs per model)."""
    import numpy as np
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).random((batch_size, *INPUT_SHAPE), np.float32))
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return lambda: forward(x)


def build_variants(learner, actor, b, jit_compile=True):
    """The timed variants for one model pair: name -> (step callable, B, ledger overhead).

    Besides the compared variants, the actor's own parts are timed alone
    (a plain train step at `b`, forward passes at `2b`, `4b`, `10b`): summed with
    the plain learner step they give a *time-calibrated* prediction of each
    active step, which separates what the wrapper adds from how fast small
    convolutions run per FLOP.

    Args:
        learner: `cnn_classifier` keyword arguments of the learner.
        actor: The same for the actor and the reference.
        b: Sub-batch size.
        jit_compile: XLA-compile every train step.
    """
    import keras
    import numpy as np

    from active_keras.analysis import flops
    from active_keras.training.active_learner import ActiveLearner

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=jit_compile,
        )
        return model

    variants = {}
    keras.utils.set_random_seed(0)
    plain = compiled(_cnn(name="learner", **learner))
    variants["plain"] = (_train_step_fn(plain, iter(_data(b, False))), b, 1.0)
    configs = [("uniform", "uniform", "topk", 2, False)]
    for factor in FACTORS:
        configs.append((f"learnability_{factor}b", "learnability", "sample", factor, False))
        configs.append(
            (f"learnability_{factor}b_precomputed", "learnability", "sample", factor, True)
        )
    for name, policy, selection, factor, precomputed in configs:
        big = factor * b
        reference = _cnn(name="reference", **actor) if policy != "uniform" else None
        table = np.random.default_rng(factor).random(big).astype(np.float32)
        model = ActiveLearner(
            _cnn(name="learner", **learner),
            reference=reference,
            policy=policy,
            selection=selection,
            keep_fraction=1.0 / factor,
            super_batch_size=big,
            seed=0,
            reference_losses=table if precomputed else None,
        )
        compiled(model)
        overhead = flops.FlopLedger.for_learner(model, big).overhead()
        variants[name] = (_train_step_fn(model, iter(_data(big, True))), big, overhead)
    actor_plain = compiled(_cnn(name="actor", **actor))
    variants["part:actor_train_b"] = (_train_step_fn(actor_plain, iter(_data(b, False))), b, None)
    for factor in FACTORS:
        step = _forward_step_fn(actor_plain, factor * b)
        variants[f"part:actor_forward_{factor}b"] = (step, factor * b, None)
    return variants


def _run_steps(step, steps):
    """Runs `steps` steps; returns seconds (synchronised on the last result)."""
    start = time.perf_counter()
    for _ in range(steps):
        out = step()
    float(out.numpy().ravel()[0])  # Wait for the device: the last step's result.
    return time.perf_counter() - start


def time_variants(variants, rounds, window, warmup):
    """Interleaved timing: per variant, seconds per step of each round."""
    for step, *_ in variants.values():
        _run_steps(step, warmup)  # Compile and warm caches.
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (step, *_) in variants.items():
            times[name].append(_run_steps(step, window) / window)
    return times


def summarize(times, variants):
    """Medians and ratios against `plain` (medians of per-round ratios)."""
    plain = times["plain"]

    def ratios(ts):
        return [t / p for t, p in zip(ts, plain, strict=True)]

    parts = {name: ratios(ts) for name, ts in times.items() if name.startswith("part:")}
    out = {}
    for name, ts in times.items():
        _, big, predicted = variants[name]
        row = {
            "super_batch_size": big,
            "median_ms_per_step": 1e3 * statistics.median(ts),
            "min_ms_per_step": 1e3 * min(ts),
            "measured_step_cost_vs_plain": statistics.median(ratios(ts)),
        }
        if predicted is not None:
            row["throughput_vs_plain"] = statistics.median([1.0 / r for r in ratios(ts)])
            row["predicted_step_cost_vs_uniform"] = predicted
            row["measured_over_predicted"] = row["measured_step_cost_vs_plain"] / predicted
        if name.startswith("learnability"):
            # Learner step + actor update at b + actor (and reference) forward over B.
            forward = parts[f"part:actor_forward_{big // variants['plain'][1]}b"]
            passes = 1.0 if name.endswith("_precomputed") else 2.0
            calibrated = [
                1.0 + a + passes * f
                for a, f in zip(parts["part:actor_train_b"], forward, strict=True)
            ]
            row["time_calibrated_step_cost"] = statistics.median(calibrated)
            row["measured_over_time_calibrated"] = statistics.median(
                [m / c for m, c in zip(ratios(ts), calibrated, strict=True)]
            )
        out[name] = row
    return out


def precomputed_vs_computed(times, variants):
    """Per `B`: precomputed / computed step time (per round), against the ledger's ratio."""
    out = {}
    for name in times:
        if not name.endswith("_precomputed"):
            continue
        computed = name[: -len("_precomputed")]
        per_round = [p / c for p, c in zip(times[name], times[computed], strict=True)]
        predicted = variants[name][2] / variants[computed][2]
        out[computed] = {
            "super_batch_size": variants[name][1],
            "measured_median": statistics.median(per_round),
            "measured_min": min(per_round),
            "measured_max": max(per_round),
            "predicted": predicted,
            "measured_over_predicted": statistics.median(per_round) / predicted,
            # Whether the rounds' spread is wider than the saving the ledger predicts.
            "noise_exceeds_predicted_saving": (max(per_round) - min(per_round)) / 2
            > 1.0 - predicted,
        }
    return out


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["pairs"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        rows = results["pairs"][size]["variants"]
        names = [n for n in rows if not n.startswith("part:")]
        xs = range(len(names))
        measured = [rows[n]["measured_step_cost_vs_plain"] for n in names]
        predicted = [rows[n]["predicted_step_cost_vs_uniform"] for n in names]
        calibrated = [rows[n].get("time_calibrated_step_cost", 1.0) for n in names]
        ax.bar([x - 0.27 for x in xs], measured, 0.27, label="measured")
        ax.bar(list(xs), predicted, 0.27, label="FLOP ledger")
        ax.bar([x + 0.27 for x in xs], calibrated, 0.27, label="parts timed alone")
        ax.set_xticks(list(xs), names, rotation=15, fontsize=8)
        ax.set_ylabel("step cost / plain fit() step")
        ratio = results["pairs"][size]["learner_over_actor_flops"]
        ax.set_title(f"learner {ratio:.0f}x actor FLOPs (b={results['b']})")
        ax.axhline(1.0, color="grey", lw=0.6)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(out_dir=None, smoke=False, rounds=None, window=None, b=64):
    """Runs the benchmark and writes `step_cost.json` (and `.png`) into `out_dir`.

    Args:
        out_dir: Results folder; default `benchmarks/results` (smoke: a temp dir).
        smoke: A few steps of each variant, tiny learners: checks the tool runs.
        rounds: Interleaved timing rounds (median over them).
        window: Steps per timing window.
        b: Sub-batch size (the plain batch size).

    Returns:
        The results dict written to `step_cost.json`.
    """
    import tempfile

    import tensorflow as tf

    if out_dir is None:
        out_dir = (
            tempfile.mkdtemp(prefix="step_cost_")
            if smoke
            else os.path.join(ROOT, "benchmarks", "results")
        )
    os.makedirs(out_dir, exist_ok=True)
    rounds = rounds or (2 if smoke else 7)
    window = window or (2 if smoke else 10)
    warmup = 2 if smoke else 5
    b = 16 if smoke else b
    targets = TARGET_RATIOS[:1] if smoke else TARGET_RATIOS
    learner = {"widths": (8, 16), "dense_units": 16} if smoke else LEARNER
    learner_flops, picked = pick_actors(targets, learner)
    results = {
        "command": "python tools/benchmark.py --suite=step_cost" + (" --smoke" if smoke else ""),
        "smoke": smoke,
        "b": b,
        "rounds": rounds,
        "window_steps": window,
        "warmup_steps": warmup,
        "jit_compile": True,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "tensorflow": tf.__version__,
        },
        "learner": learner,
        "learner_forward_flops": learner_flops,
        "pairs": {},
    }
    for target, (actor, actor_flops) in picked.items():
        variants = build_variants(learner, actor, b)
        times = time_variants(variants, rounds, window, warmup)
        rows = summarize(times, variants)
        ratio = learner_flops / actor_flops
        results["pairs"][f"{target}x"] = {
            "actor": actor,
            "actor_forward_flops": actor_flops,
            "learner_over_actor_flops": ratio,
            "variants": rows,
            "precomputed_vs_computed": precomputed_vs_computed(times, variants),
        }
        print(f"\nlearner {ratio:.0f}x actor FLOPs (actor {actor}):")
        for name, row in rows.items():
            line = (
                f"  {name:22s} B={row['super_batch_size']:4d} "
                f"{row['median_ms_per_step']:8.2f} ms/step  "
                f"measured {row['measured_step_cost_vs_plain']:.3f}x"
            )
            if "predicted_step_cost_vs_uniform" in row:
                line += f"  FLOP-predicted {row['predicted_step_cost_vs_uniform']:.3f}x"
            if "time_calibrated_step_cost" in row:
                line += f"  parts-timed {row['time_calibrated_step_cost']:.3f}x"
            print(line, flush=True)
        for name, row in results["pairs"][f"{target}x"]["precomputed_vs_computed"].items():
            print(
                f"  {name} precomputed / computed: measured {row['measured_median']:.3f} "
                f"(rounds {row['measured_min']:.3f}-{row['measured_max']:.3f}), "
                f"FLOP-predicted {row['predicted']:.3f}",
                flush=True,
            )
    results["machine"]["load_average_at_end"] = os.getloadavg()
    with open(os.path.join(out_dir, "step_cost.json"), "w") as f:
        json.dump(results, f, indent=1)
    _plot(results, os.path.join(out_dir, "step_cost.png"))
    print(f"wrote {os.path.join(out_dir, 'step_cost.json')}", flush=True)
    return results


def main(out_dir=None, smoke=False):
    """The `step_cost` suite of `tools/benchmark.py`: runs it; returns None (exit status 0)."""
    run(out_dir, smoke)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--b", type=int, default=64)
    args = parser.parse_args()
    run(args.out_dir, args.smoke, args.rounds, args.window, args.b)
