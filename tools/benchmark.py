r"""Benchmarks: every policy against a tuned uniform baseline, written to files.

Each run is a real CLI run (`python -m active_keras.main`) with its own
metrics.json; this tool runs them (several at a time with --jobs), then reads
the curves, computes speedups against uniform (updates and total FLOPs to reach
uniform's best test accuracy) and writes `benchmarks/results/<suite>.json` and
`<suite>.png`. Nothing is typed in: every figure comes from the runs.

Usage:

  python tools/benchmark.py --suite=classact --jobs=2
  python tools/benchmark.py --suite=classact --smoke   # seconds, for CI

Suites register themselves in SUITES; a suite is a list of runs, each a name,
gin files and bindings, grouped into comparisons that share one baseline.
"""

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from active_keras import speedup  # noqa: E402
from tools import step_cost  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("suite", "classact", "Which suite to run.")
flags.DEFINE_integer("jobs", 1, "Runs at a time (each a process).")
flags.DEFINE_bool("smoke", False, "Shrink every run (--local) and write to --out_dir only.")
flags.DEFINE_string(
    "out_dir", None, "Results folder; default benchmarks/results (smoke: a tmp dir)."
)
flags.DEFINE_string("runs_dir", None, "Where run folders go; default benchmarks/runs/<suite>.")
flags.DEFINE_bool("reuse", True, "Skip runs whose metrics.json is complete.")
flags.DEFINE_multi_string("only", [], "Run only these run names.")
flags.DEFINE_bool("summarize_only", False, "Run nothing; summarize the runs that are complete.")


@dataclasses.dataclass
class Run:
    name: str
    gin_files: list
    bindings: list = dataclasses.field(default_factory=list)
    group: str = "default"  # Runs of a group compare against the group's baseline.
    baseline: bool = False
    label: str = ""


def _classact_suite():
    """ClassAct on Fashion-MNIST, 20% label noise and clean labels (most telling runs first)."""
    common = ["run.num_steps = 3000", "run.eval_every = 250", "run.jit_compile = False"]

    def run(group, name, gin_file, label, policy=None, selection=None, lr="1e-3"):
        noise = {"noise20": 0.2, "clean": 0.0, "noise20_train10k": 0.2}[group]
        # A smaller training set: 3,000 updates are ~19 epochs, where uniform memorises noise.
        small = ["ImageClassificationData.train_size = 10000"] if group.endswith("10k") else []
        bindings = (
            common
            + small
            + [
                f"ImageClassificationData.label_noise = {noise}",
                f"make_optimizer.learning_rate = {lr}",
            ]
        )
        if policy:
            bindings += [f"run.policy = '{policy}'", f"run.selection = '{selection}'"]
        return Run(
            f"{group}/{name}_lr{lr}",
            [gin_file],
            bindings,
            group=group,
            baseline=policy is None,
            label=f"{label} lr={lr}",
        )

    active = "gin/classact.gin"
    return [
        run("noise20", "uniform", "gin/uniform.gin", "uniform"),
        run(
            "noise20",
            "learnability_sample",
            active,
            "learnability (sample)",
            "learnability",
            "sample",
        ),
        run("clean", "uniform", "gin/uniform.gin", "uniform"),
        run(
            "clean",
            "learnability_sample",
            active,
            "learnability (sample)",
            "learnability",
            "sample",
        ),
        # Uniform gets a learning-rate sweep: at least the tuning the active runs get.
        run("noise20", "uniform", "gin/uniform.gin", "uniform", lr="2e-3"),
        run("noise20", "learnability_topk", active, "learnability (top-k)", "learnability", "topk"),
        run("noise20", "rho_loss_sample", active, "rho_loss (sample)", "rho_loss", "sample"),
        run(
            "noise20",
            "hard_learner_sample",
            active,
            "hard_learner (sample)",
            "hard_learner",
            "sample",
        ),
        run(
            "noise20",
            "easy_reference_sample",
            active,
            "easy_reference (sample)",
            "easy_reference",
            "sample",
        ),
        run("clean", "uniform", "gin/uniform.gin", "uniform", lr="2e-3"),
        run("noise20_train10k", "uniform", "gin/uniform.gin", "uniform"),
        run(
            "noise20_train10k",
            "learnability_sample",
            active,
            "learnability (sample)",
            "learnability",
            "sample",
        ),
    ]


def _activeclip_suite():
    """ActiveCLIP on Open Clip Art (32 px, ViT "small" learner, "tiny" actor / reference).

    Sized for about 30 minutes on a shared 2-core machine. The first run
    decodes the PNGs into the on-disk cache; every run shares one vocabulary
    (learned once, copied into each run directory) so the reference's token
    ids are the learner's. The bindings repeat `run.task` and the reference
    settings because the suite's shared reference is trained with
    `gin/reference.gin` appended, whose Fashion-MNIST include they override.
    """
    vocab = os.path.join(ROOT, "benchmarks", "runs", "activeclip", "_vocab")
    reference = os.path.join(ROOT, "benchmarks", "runs", "activeclip", "_references")
    common = [
        "run.task = @ClipTask()",
        f"ClipTask.vocab_dir = '{vocab}'",
        "run.super_batch_size = 128",
        "run.num_steps = 800",
        "run.eval_every = 50",
        "run.jit_compile = False",
        "train_reference.num_steps = 300",
        "train_reference.batch_size = 128",
        "train_reference.jit_compile = False",
    ]

    def run(name, gin_file, label, selection=None, lr="1e-3", captions="full"):
        bindings = common + [
            f"make_optimizer.learning_rate = {lr}",
            f"ClipTask.reference_captions = '{captions}'",
            f"run.reference_path = '{reference}/tiny_{captions}_captions.keras'",
        ]
        if selection:
            bindings += ["run.policy = 'learnability'", f"run.selection = '{selection}'"]
        return Run(
            f"openclipart/{name}_lr{lr}",
            [gin_file],
            bindings,
            group="openclipart",
            baseline=selection is None,
            label=f"{label} lr={lr}",
        )

    active, uniform = "gin/activeclip.gin", "gin/activeclip_uniform.gin"
    return [
        run("learnability_sample", active, "learnability (sample)", "sample"),
        run("uniform", uniform, "uniform"),
        run("learnability_joint", active, "learnability (joint)", "joint"),
        run(
            "learnability_sample_category_ref",
            active,
            "learnability (sample), category-caption reference",
            "sample",
            captions="category",
        ),
        # Uniform gets a learning-rate sweep: at least the tuning the active runs get.
        run("uniform", uniform, "uniform", lr="2e-3"),
    ]


def _replay_suite():
    """Replay: a learner of another size trained on a recorded ClassAct selection sequence.

    An active run (learnability, 20% noise, 10k training images) records the ids
    it selects; a smaller learner then trains on that sequence with no scoring
    cost, against uniform training of the same smaller learner.
    """
    source = os.path.join(ROOT, "benchmarks", "runs", "replay", "source", "active_learnability")
    common = [
        "run.num_steps = 3000",
        "run.eval_every = 250",
        "run.jit_compile = False",
        "ImageClassificationData.label_noise = 0.2",
        "ImageClassificationData.train_size = 10000",
    ]
    small = ["learner/cnn_classifier.widths = (16, 32)", "learner/cnn_classifier.dense_units = 32"]
    return [
        Run(
            "source/active_learnability",
            ["gin/classact.gin"],
            common,
            group="source",
            label="learnability, recording (learner 220k)",
        ),
        Run(
            "small_learner/uniform",
            ["gin/uniform.gin"],
            common + small,
            group="small_learner",
            baseline=True,
            label="uniform (learner 56k)",
        ),
        Run(
            "small_learner/replay",
            ["gin/uniform.gin"],
            common + small + [f"run.replay_from = '{source}'"],
            group="small_learner",
            label="replay of the learnability run (learner 56k)",
        ),
    ]


# name -> (runs factory, metric compared at the baseline's best).
SUITES = {"classact": (_classact_suite, "test_accuracy")}
SUITES["replay"] = (_replay_suite, "test_accuracy")
# Zero-shot accuracy on this small, unbalanced category set peaks early and is noisy;
# retrieval recall is reported beside it.
SUITES["activeclip"] = (
    _activeclip_suite,
    "zero_shot_accuracy",
    ("image_to_text_recall@5", "text_to_image_recall@5"),
)
# name -> main(out_dir, smoke) for suites that are not sets of training runs.
CUSTOM_SUITES = {}
CUSTOM_SUITES["step_cost"] = step_cost.main
SMOKE_BINDINGS = ["run.num_steps = 20", "run.eval_every = 10"]


def _metrics_path(runs_dir, run):
    return os.path.join(runs_dir, run.name, "metrics.json")


def _complete(path, bindings):
    if not os.path.exists(path):
        return False
    with open(path) as f:
        curve = json.load(f)["curve"]
    steps = [b for b in bindings if b.startswith("run.num_steps")]
    want = int(steps[-1].split("=")[1]) if steps else None
    return bool(curve) and (want is None or curve[-1]["step"] >= want)


def _execute(run, runs_dir, smoke, reuse):
    path = _metrics_path(runs_dir, run)
    bindings = run.bindings + (SMOKE_BINDINGS if smoke else [])
    if reuse and _complete(path, bindings):
        return run.name, 0.0, "reused"
    cmd = [sys.executable, "-m", "active_keras.main", f"--model_dir={os.path.dirname(path)}"]
    cmd += [f"--gin_file={g}" for g in run.gin_files]
    cmd += [f"--gin_bindings={b}" for b in bindings]
    cmd += ["--local"] if smoke else []
    start = time.time()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(os.path.dirname(path), "log.txt"), "w") as log:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
    if proc.returncode:
        raise RuntimeError(f"run {run.name} failed; see {os.path.dirname(path)}/log.txt")
    return run.name, time.time() - start, "ran"


def _load(runs_dir, run):
    with open(_metrics_path(runs_dir, run)) as f:
        return json.load(f)


def summarize(runs, runs_dir, metric="test_accuracy", also=()):
    """Per group: the tuned baseline (best uniform), and every run compared with it."""
    results = {}
    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        data = {r.name: _load(runs_dir, r) for r in members}
        baselines = [r for r in members if r.baseline]
        if not baselines:
            continue  # Nothing to compare with (a partial summary).
        best = max(baselines, key=lambda r: max(p[metric] for p in data[r.name]["curve"]))
        base_curve = data[best.name]["curve"]
        rows = {}
        for r in members:
            row = speedup.compare(base_curve, data[r.name]["curve"], metric)
            # Other metrics, each against the best uniform run for that metric.
            row["also"] = {
                m: speedup.compare(
                    max(
                        (data[b.name]["curve"] for b in baselines),
                        key=lambda c, m=m: max(p[m] for p in c),
                    ),
                    data[r.name]["curve"],
                    m,
                )
                for m in also
            }
            row.update(
                label=r.label,
                baseline=r.baseline,
                policy=data[r.name]["policy"],
                selection=data[r.name].get("selection"),
                predicted_step_cost_vs_uniform=data[r.name].get(
                    "predicted_step_cost_vs_uniform", 1.0
                ),
                final_selected_corrupted=data[r.name]["curve"][-1].get("train_selected_corrupted"),
            )
            rows[r.name] = row
        results[group] = {
            "baseline": best.name,
            "runs": rows,
            "curves": {n: d["curve"] for n, d in data.items()},
        }
    return results


def plot(results, path, metric="test_accuracy"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(results)
    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.5 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        res = results[group]
        for col, (xkey, xlabel) in enumerate(
            (("learner_updates", "learner updates"), ("total_flops", "total training FLOPs"))
        ):
            ax = axes[row][col]
            for name, curve in res["curves"].items():
                info = res["runs"][name]
                style = "--" if info["baseline"] else "-"
                width = 2.5 if name == res["baseline"] else 1.2
                ax.plot(
                    [p[xkey] for p in curve],
                    [p[metric] for p in curve],
                    style,
                    lw=width,
                    label=info["label"],
                )
            ax.axhline(res["runs"][res["baseline"]]["target"], color="grey", lw=0.6)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_title(f"{group}: {metric.replace('_', ' ')} vs {xlabel}")
            lo = min(p[metric] for c in res["curves"].values() for p in c[2:] or c)
            ax.set_ylim(max(lo - 0.01, 0), None)
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv):
    del argv
    if FLAGS.suite in CUSTOM_SUITES:
        return CUSTOM_SUITES[FLAGS.suite](FLAGS.out_dir, FLAGS.smoke)
    if FLAGS.suite not in SUITES:
        raise app.UsageError(
            f"Unknown suite {FLAGS.suite!r}; have {sorted(SUITES) + sorted(CUSTOM_SUITES)}."
        )
    make_runs, metric, *also = SUITES[FLAGS.suite]
    also = also[0] if also else ()
    runs = make_runs()
    if FLAGS.smoke:
        # One baseline per group is enough to exercise the pipeline.
        first = {}
        for r in runs:
            if r.baseline:
                first.setdefault(r.group, r)
        runs = [r for r in runs if not r.baseline or first[r.group] is r]
    if FLAGS.only:
        groups = {r.group for r in runs if r.name in FLAGS.only}
        runs = [r for r in runs if r.name in FLAGS.only or (r.baseline and r.group in groups)]
    runs_dir = FLAGS.runs_dir or os.path.join(
        ROOT, "benchmarks", "runs" if not FLAGS.smoke else "runs_smoke", FLAGS.suite
    )
    out_dir = FLAGS.out_dir or (
        os.path.join(runs_dir, "results")
        if FLAGS.smoke
        else os.path.join(ROOT, "benchmarks", "results")
    )
    os.makedirs(out_dir, exist_ok=True)
    if FLAGS.summarize_only:
        done = [r for r in runs if _complete(_metrics_path(runs_dir, r), r.bindings)]
        not_run = [r.name for r in runs if r not in done]
        runs = done
        print(f"summarizing {len(done)} complete runs; not run or incomplete: {not_run}")
    else:
        not_run = []
        _train_reference(runs, runs_dir)
        _run_all(runs, runs_dir)
    results = summarize(runs, runs_dir, metric, also)
    results_meta = {
        "suite": FLAGS.suite,
        "smoke": FLAGS.smoke,
        "command": "python tools/benchmark.py " + " ".join(sys.argv[1:]),
        "not_run": not_run,
    }
    with open(os.path.join(out_dir, f"{FLAGS.suite}.json"), "w") as f:
        json.dump(dict(results_meta, groups=results), f, indent=1)
    plot(results, os.path.join(out_dir, f"{FLAGS.suite}.png"), metric)
    for group, res in results.items():
        print(f"\n[{group}] baseline {res['baseline']}")
        print(speedup.format_table({r["label"]: r for r in res["runs"].values()}, metric))


def _train_reference(runs, runs_dir):
    # The reference is shared: train it once before runs start in parallel.
    first_active = next(r for r in runs if not r.baseline)
    _execute(
        Run(
            f"{first_active.group}/_reference",
            first_active.gin_files + ["gin/reference.gin"],
            first_active.bindings,
        ),
        runs_dir,
        FLAGS.smoke,
        reuse=False,
    )


def _run_all(runs, runs_dir):
    with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
        futures = [pool.submit(_execute, r, runs_dir, FLAGS.smoke, FLAGS.reuse) for r in runs]
        for fut in concurrent.futures.as_completed(futures):
            name, seconds, how = fut.result()
            print(f"{name}: {how} ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    app.run(main)
