r"""ActiveCLIP selection coverage: how evenly each policy's updates cover the training pairs.

Reruns, with `run.record_selections = True`, a few runs of the ActiveCLIP
ladder (`tools/benchmark.py --suite=activeclip`; the same gin files and
bindings; the committed run's final metrics are listed beside the rerun's)
and counts how often each training pair was selected
(`active_keras.analysis.coverage`). It measures the cause given for
learnability falling behind uniform at 2,000 updates: on about 5,500 pairs
seen about 23 times each, a sharp draw keeps skipping the same pairs.

Writes `activeclip_coverage.json` (statistics per run) and
`activeclip_coverage.png` (Lorenz curves: the share of all selections that
went to the least-selected share of the pairs) to the output folder.

Usage:

  python tools/benchmark.py --suite=activeclip_coverage --jobs=2   # benchmarks/results/
  python tools/benchmark.py --suite=activeclip_coverage --smoke    # 20-step runs (--local)
"""

import concurrent.futures
import dataclasses
import json
import os
import sys
import time

import numpy as np
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The ladder runs rerun with recording: uniform and learnability at three temperatures, at the
# budget where uniform overtakes learnability (T = 1).
CONFIGS = (
    "uniform_lr1e-3",
    "learnability_sample",  # T = 1.
    "learnability_sample_T4",  # The shipped default.
    "learnability_sample_T16",
)
SEED, BUDGET = 0, 2000
# Listed for the rerun and the committed run: the headline metrics of the last evaluation.
CHECKED = ("image_to_text_recall@5", "text_to_image_recall@5", "learner_updates")


def _runs(benchmark, smoke):
    """`{config: Run}` of the ladder runs rerun here, with recording on."""
    reference = os.path.join("benchmarks", "runs", "activeclip", "_reference", "reference.keras")
    suite = benchmark.LADDER_SUITES["activeclip"]
    by_name = {r.name: r for r in suite.make_runs(smoke, reference)}
    budget = 20 if smoke else BUDGET
    out = {}
    for config in CONFIGS:
        run = by_name.get(f"{benchmark.ACTIVECLIP_REGIME}/{config}/seed{SEED}/n{budget}")
        if run is not None:  # The smoke suite has fewer configurations.
            out[config] = dataclasses.replace(
                run, bindings=run.bindings + ["run.record_selections = True"]
            )
    return out, reference, suite.reference_gin


def _train_ids():
    """Example ids of the training split of the shipped Open Clip Art configuration."""
    import gin

    from active_keras import main as cli
    from active_keras.data import openclipart

    cli.parse_config([os.path.join(ROOT, "gin", "openclipart.gin")], [])
    try:
        data = openclipart.OpenClipArt()
    finally:
        gin.clear_config()
    return openclipart.example_ids("train", len(data.examples("train")))


def _final(metrics_path):
    with open(metrics_path) as f:
        return json.load(f)["curve"][-1]


def measure(benchmark, out_dir, smoke=False, jobs=2):
    """Runs (or reuses) the recorded runs and writes the coverage statistics and figure.

    `benchmark` is the `tools/benchmark.py` module that calls this (it may be `__main__`).
    """
    from active_keras.analysis import coverage
    from active_keras.training import replay

    start = time.time()
    runs_dir = os.path.join(
        ROOT, "benchmarks", "runs_smoke" if smoke else "runs", "activeclip_coverage"
    )
    runs, reference, reference_gin = _runs(benchmark, smoke)
    if not smoke and not os.path.exists(os.path.join(ROOT, reference)):  # --local has its own.
        first = next(r for r in runs.values() if not r.baseline)
        ref_run = benchmark.Run("_reference", first.gin_files + [reference_gin], first.bindings)
        benchmark._execute(ref_run, os.path.dirname(os.path.dirname(reference)), False, False)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(benchmark._execute, r, runs_dir, smoke, True) for r in runs.values()]
        for fut in concurrent.futures.as_completed(futures):
            name, seconds, how = fut.result()
            print(f"{name}: {how} ({seconds:.0f} s)", flush=True)
    train_ids = _train_ids()
    store = os.path.join(ROOT, "benchmarks", "results", "activeclip_runs")
    results = {}
    for config, run in runs.items():
        run_dir = os.path.join(runs_dir, run.name)
        counts = coverage.selection_counts(replay.load_selected_ids(run_dir), train_ids)
        final = _final(os.path.join(run_dir, "metrics.json"))
        stored_path = os.path.join(store, run.name, "metrics.json")
        stored = _final(stored_path) if os.path.exists(stored_path) else None
        with open(os.path.join(run_dir, "timing.json")) as f:
            wall = json.load(f)["wall_seconds"]
        results[config] = {
            "run": run.name,
            "wall_seconds": wall,  # Training only, all sittings (timing.json).
            **coverage.summarize(counts),
            **{k: final[k] for k in CHECKED},
            # The committed run of the same configuration, for comparison: recording changes
            # nothing, but over 2,000 updates floating-point differences between machines
            # (oneDNN kernels) grow to about a seed's spread.
            "committed_run": None if stored is None else {k: stored[k] for k in CHECKED},
            # Pairs selected 0, 1, 2, ... times (the figure's Lorenz curve comes from it).
            "count_histogram": np.bincount(counts).tolist(),
        }
    out = {
        "command": "python tools/benchmark.py --suite=activeclip_coverage --jobs=2",
        "smoke": smoke,
        "seed": SEED,
        "budget": 20 if smoke else BUDGET,
        "seconds_this_call": round(time.time() - start),
        "runs": results,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "activeclip_coverage.json"), "w") as f:
        json.dump(out, f, indent=1)
    _plot(results, os.path.join(out_dir, "activeclip_coverage.png"))
    for config, r in results.items():
        print(
            f"{config}: {r['share_below_half']:.1%} of pairs below half the mean count, "
            f"gini {r['gini']:.3f}, recall@5 {r['image_to_text_recall@5']:.4f}",
            flush=True,
        )
    return out


def _plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from active_keras.analysis import coverage

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for config, r in results.items():
        counts = np.repeat(np.arange(len(r["count_histogram"])), r["count_histogram"])
        x, y = coverage.lorenz(counts)
        ax.plot(x, y, label=f"{config} (gini {r['gini']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="every pair equally often")
    ax.set_xlabel("share of training pairs, least selected first")
    ax.set_ylabel("share of all selections")
    ax.set_title("ActiveCLIP: who gets trained on (seed 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(out_dir=None, smoke=False, benchmark=None):
    """`tools/benchmark.py --suite=activeclip_coverage` entry point (its --jobs applies)."""
    results = os.path.join(ROOT, "benchmarks", "results")
    default = os.path.join(ROOT, "benchmarks", "runs_smoke", "results") if smoke else results
    measure(benchmark, out_dir or default, smoke, flags.FLAGS.jobs)
