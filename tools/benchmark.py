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
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from active_keras.analysis import speedup  # noqa: E402
from tools import selection_coverage, step_cost  # noqa: E402

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
flags.DEFINE_string(
    "store",
    None,
    "Ladder suites: folder of the committed per-run files (metrics.json, operative_config.gin, "
    "run.json); default benchmarks/results/<suite>_runs (smoke: inside --runs_dir).",
)
flags.DEFINE_multi_string(
    "select", [], "Ladder suites: run only runs whose name starts with one of these prefixes."
)


@dataclasses.dataclass
class Run:
    name: str
    gin_files: list
    bindings: list = dataclasses.field(default_factory=list)
    group: str = "default"  # Runs of a group compare against the group's baseline.
    baseline: bool = False
    label: str = ""
    ladder: dict = None  # For budget-ladder suites: regime, config, seed, budget, keep_fraction.


# The ClassAct evidence protocol (METHOD.md "How to measure a speedup"): for each regime a
# ladder of budgets; every run decays its learning rate to zero at its own budget.
CLASSACT_REGIMES = {  # name -> (label noise, training images or None for all, budgets)
    # 190: learnability already reached uniform's 375-update accuracy at 375 (issue 10, item 3);
    # not 188, since a run's budget must be a multiple of its evaluation interval.
    "noise20_train10k": (0.2, 10000, (190, 375, 750, 1500, 3000)),
    # 12,000: uniform still gained from 3,000 to 6,000 (0.900 -> 0.910), so a best-uniform
    # headline at 6,000 would be the ladder's edge, not uniform's best. 750 (on both 50k
    # regimes): learnability already reached the best uniform accuracy at 1,500 there.
    "noise20": (0.2, None, (750, 1500, 3000, 6000, 12000)),
    "clean": (0.0, None, (750, 1500, 3000, 6000)),
    # Clean labels with a learner 3.9x larger (31 MFLOPs, 50x the actor): is there a
    # compute-positive setting once scoring is cheap next to the learner's update (issue 10)?
    "clean_learner4x": (0.0, None, (1500, 3000)),
}
# Bindings a regime adds to every run of it.
CLASSACT_REGIME_BINDINGS = {
    "clean_learner4x": [
        "learner/cnn_classifier.widths = (64, 128)",
        "learner/cnn_classifier.dense_units = 128",
    ],
}
CLASSACT_SEEDS = (0, 1, 2)
SUB_BATCH = 64  # b: every configuration trains the learner on 64 examples a step.
EVALS_PER_RUN = 5


def _classact_configs(regime):
    """(config name, gin file, policy, keep fraction, learning rate, budgets) of a regime."""
    budgets = CLASSACT_REGIMES[regime][2]
    lr2 = "2e-3"
    configs = [
        # Uniform gets a learning-rate sweep at every budget; the best is the baseline.
        ("uniform_lr1e-3", "gin/uniform.gin", "uniform", 0.5, "1e-3", budgets),
        ("uniform_lr2e-3", "gin/uniform.gin", "uniform", 0.5, lr2, budgets),
        ("learnability_keep0.5", "gin/classact.gin", "learnability", 0.5, "1e-3", budgets),
        # On noise20_train10k learnability gained most from the rate that helped uniform: both
        # policies get the same two-rate sweep.
        ("learnability_keep0.5_lr2e-3", "gin/classact.gin", "learnability", 0.5, lr2, budgets),
    ]
    if regime in ("noise20_train10k", "noise20", "clean"):
        # 2e-3 was uniform's best at every budget up to 1,500 (10k) and 6,000 (50k), and at
        # every budget on clean labels: a third rate brackets its optimum.
        configs.append(("uniform_lr4e-3", "gin/uniform.gin", "uniform", 0.5, "4e-3", budgets))
    if regime in ("noise20", "clean"):
        # On 50k images 4e-3 beat 2e-3 for uniform at 1,500 and 3,000: learnability gets the
        # same third rate.
        configs.append(
            (
                "learnability_keep0.5_lr4e-3",
                "gin/classact.gin",
                "learnability",
                0.5,
                "4e-3",
                budgets,
            )
        )
    if regime == "noise20_train10k":
        configs += [
            ("learnability_keep0.25", "gin/classact.gin", "learnability", 0.25, "1e-3", budgets),
            # RHO-LOSS's filter ratio, at the smallest budgets.
            ("learnability_keep0.1", "gin/classact.gin", "learnability", 0.1, "1e-3", budgets[:4]),
            (
                "learnability_keep0.25_lr2e-3",
                "gin/classact.gin",
                "learnability",
                0.25,
                lr2,
                budgets,
            ),
        ]
    return configs


def _ladder_run(regime, config, gin_file, bindings, seed, budget, keep):
    """One run of a budget ladder; its config names a uniform baseline when it starts so."""
    return Run(
        f"{regime}/{config}/seed{seed}/n{budget}",
        [gin_file],
        bindings,
        group=regime,
        baseline=config.startswith("uniform"),
        label=config,
        ladder=dict(regime=regime, config=config, seed=seed, budget=budget, keep_fraction=keep),
    )


def _classact_suite(smoke, reference_path):
    """ClassAct on Fashion-MNIST: the fair-evidence regimes, then the earlier ladders."""
    if smoke:  # One fair regime and one earlier one exercise both kinds of summary.
        fair = _fair_suite(smoke, reference_path, regimes=("noise20_train10k_val",))
    else:
        fair = _fair_suite(smoke, reference_path)
    return fair + _classact_test_picked_suite(smoke, reference_path)


def _classact_test_picked_suite(smoke, reference_path):
    """The earlier ladders (picked on test): budget ladders, 3 seeds, decayed schedules."""
    regimes = {"noise20_train10k": CLASSACT_REGIMES["noise20_train10k"]} if smoke else {}
    regimes = regimes or CLASSACT_REGIMES
    seeds = CLASSACT_SEEDS[:2] if smoke else CLASSACT_SEEDS
    runs = []
    for regime, (noise, train_size, _) in regimes.items():
        data = [f"ImageClassificationData.label_noise = {noise}"]
        if train_size:
            data.append(f"ImageClassificationData.train_size = {train_size}")
        data += CLASSACT_REGIME_BINDINGS.get(regime, [])
        # Seed-major: a suite stopped part-way has every configuration at the first seeds,
        # a one-seed answer to each question, rather than three seeds of a few configurations.
        for seed in seeds:
            for config, gin_file, policy, keep, lr, budgets in _classact_configs(regime):
                if smoke:
                    if config not in ("uniform_lr1e-3", "learnability_keep0.5"):
                        continue
                    budgets = (10, 20)
                for budget in budgets:
                    bindings = data + [
                        f"ActiveLearner.policy = '{policy}'",
                        f"ActiveLearner.keep_fraction = {keep}",
                        f"run.super_batch_size = {round(SUB_BATCH / keep)}",
                        f"run.seed = {seed}",
                        f"run.num_steps = {budget}",
                        f"run.eval_every = {budget // EVALS_PER_RUN}",
                        f"make_optimizer.learning_rate = {lr}",
                        "make_optimizer.schedule = 'cosine'",
                        "run.jit_compile = False",  # XLA is slower for these convolutions on CPU.
                        "run.write_report = False",
                        "run.record_selections = False",
                        "run.selection_log_every = 0",
                        f"run.reference_path = '{reference_path}'",
                    ]
                    if policy != "uniform":
                        # The frozen reference's losses never change here (fixed data, no
                        # augmentation): looked up, not recomputed; selection is the same.
                        bindings.append("run.reference_losses = 'auto'")
                    bindings += CLASSACT_SMOKE_BINDINGS if smoke else []
                    runs.append(_ladder_run(regime, config, gin_file, bindings, seed, budget, keep))
    return runs


# Fair evidence (issue 27): every selection arm against uniform trained on every labelled example
# its reference saw, everything picked on a 5,000-image validation split that carries the
# regime's label noise, and reported on test. (label noise, training images or None for all the
# 45,000 left after held-out and validation, budgets, learning rates, arms)
FAIR_REGIMES = {
    # The training images of noise20_train10k (its validation images come from the 40,000 it
    # leaves unused), at the same budgets and its three rates.
    "noise20_train10k_val": (
        0.2,
        10000,
        (190, 375, 750, 1500, 3000),
        ("1e-3", "2e-3", "4e-3"),
        ("train", "train+heldout_clean10k", "train+heldout_clean2k"),
    ),
    # The seed paper's setting: each example trained on about once (b x updates <= 45,000).
    # 4e-3 already won at 750 updates on both 50k regimes, so the sweep goes above it.
    "single_pass_clean": (
        0.0,
        None,
        (94, 188, 375, 750),
        ("2e-3", "4e-3", "8e-3"),
        ("train", "train+heldout_clean10k"),
    ),
    "single_pass_noise20": (
        0.2,
        None,
        (94, 188, 375, 750),
        ("2e-3", "4e-3", "8e-3"),
        ("train", "train+heldout_clean10k"),
    ),
}
FAIR_VALIDATION_SIZE = 5000
# What each baseline trains on, as data bindings: `train_data` -> bindings.
FAIR_TRAIN_DATA = {
    "train": [],
    "train+heldout_clean10k": ["ImageClassificationData.train_with_heldout = True"],
    "train+heldout_clean2k": [
        "ImageClassificationData.train_with_heldout = True",
        "ImageClassificationData.heldout_limit = 2000",
    ],
}
# The reference each selection arm scores with, and the data set its matched baseline trains on.
# A smaller clean set trains for the same number of epochs (400 steps of 128 on 2,000 images as
# 2,000 on 10,000); the two cross-fitted references split one reference's 2,000 steps, so that
# cross-fitting costs the same pre-training as one held-out reference.
FAIR_REFERENCES = {  # reference_data -> (matched train_data, bindings, reference folder)
    "clean_heldout10k": ("train+heldout_clean10k", [], None),
    "clean_heldout2k": (
        "train+heldout_clean2k",
        ["ImageClassificationData.heldout_limit = 2000", "train_reference.num_steps = 400"],
        "_reference_clean2k",
    ),
    "crossfit": (
        "train",
        ["train_reference.split = 'crossfit'", "train_reference.num_steps = 1000"],
        "_reference_crossfit_{regime}",  # Trained on the regime's own (noisy) training images.
    ),
}


# The order in which the fair suite runs (regime, largest budget): the two targets' questions
# first, so that a suite stopped part-way has complete 3-seed ladders of them. The 3,000-update
# runs are half of all noise20_train10k_val's updates.
FAIR_ORDER = (
    ("noise20_train10k_val", 1500),
    ("single_pass_clean", 750),
    ("noise20_train10k_val", 3000),
    ("single_pass_noise20", 750),
)


def _fair_order(run):
    regime, budget = run.ladder["regime"], run.ladder["budget"]
    return next(i for i, (r, b) in enumerate(FAIR_ORDER) if r == regime and budget <= b)


def _fair_suite(smoke, reference_path, regimes=None):
    """The fair-evidence regimes (`FAIR_REGIMES`), in `FAIR_ORDER`, budget by budget.

    A run evaluates before training and at its budget only: a ladder reads
    its final point, and start-up and evaluation (validation and test,
    15,000 images) were most of a short run's time.
    """
    runs = []
    runs_dir = os.path.dirname(os.path.dirname(reference_path))
    for regime, (noise, train_size, budgets, rates, train_datas) in FAIR_REGIMES.items():
        if regimes is not None and regime not in regimes:
            continue
        data = [
            f"ImageClassificationData.label_noise = {noise}",
            f"ImageClassificationData.validation_size = {FAIR_VALIDATION_SIZE}",
        ]
        if train_size:
            data.append(f"ImageClassificationData.train_size = {train_size}")
        arms = [("uniform", f"uniform_{t}", t, None, []) for t in train_datas]
        for ref_data, (matched, extra, folder) in FAIR_REFERENCES.items():
            if matched not in train_datas:
                continue
            if folder:
                path = os.path.join(runs_dir, folder.format(regime=regime), "reference.keras")
                extra = extra + [f"run.reference_path = '{path}'"]
            arms.append(("learnability", f"learnability_{ref_data}", matched, ref_data, extra))
        if smoke:
            arms, budgets, rates = arms[:1] + arms[-1:], (10, 20), rates[:1]
        for budget in budgets:
            for seed in CLASSACT_SEEDS[:2] if smoke else CLASSACT_SEEDS:
                for policy, arm, train_data, ref_data, extra in arms:
                    for lr in rates:
                        bindings = data + [
                            f"ActiveLearner.policy = '{policy}'",
                            "ActiveLearner.keep_fraction = 0.5",
                            f"run.super_batch_size = {2 * SUB_BATCH}",
                            f"run.seed = {seed}",
                            f"run.num_steps = {budget}",
                            f"run.eval_every = {budget}",
                            f"make_optimizer.learning_rate = {lr}",
                            "make_optimizer.schedule = 'cosine'",
                            "run.jit_compile = False",
                            "run.write_report = False",
                            "run.record_selections = False",
                            "run.selection_log_every = 0",
                            f"run.reference_path = '{reference_path}'",
                        ]
                        if policy == "uniform":
                            bindings += FAIR_TRAIN_DATA[train_data]
                        else:
                            bindings.append("run.reference_losses = 'auto'")
                        bindings += extra + (CLASSACT_SMOKE_BINDINGS if smoke else [])
                        gin_file = f"gin/{'uniform' if policy == 'uniform' else 'classact'}.gin"
                        run = _ladder_run(
                            regime, f"{arm}_lr{lr}", gin_file, bindings, seed, budget, 0.5
                        )
                        run.ladder.update(
                            train_data=train_data if policy == "uniform" else "train",
                            reference_data=ref_data,
                            baseline_train_data=train_data,
                            learning_rate=float(lr),
                        )
                        runs.append(run)
    return sorted(runs, key=_fair_order)  # Stable: budget, seed, arm, rate within each part.


# The smoke ladder shrinks the data as gin/local.gin does, but keeps each run's budget.
CLASSACT_SMOKE_BINDINGS = [
    "ImageClassificationData.heldout_size = 1000",
    "ImageClassificationData.train_size = 2000",
    "train_reference.num_steps = 20",
]


def _classact_constant_lr_suite():
    """The earlier ClassAct view: constant learning rate, one seed, one budget (3,000 updates).

    Kept as the second view beside the budget ladders of `classact`: updates to reach
    the tuned uniform baseline's best accuracy along evaluation curves.
    """
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
            bindings += [
                f"ActiveLearner.policy = '{policy}'",
                f"ActiveLearner.selection = '{selection}'",
            ]
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


# The ActiveCLIP evidence protocol: the ClassAct ladder (3 seeds, budgets, cosine decay to
# zero at each budget, uniform with a learning-rate sweep) on Open Clip Art at 32 px, ViT
# "small" learner, "tiny" actor and reference. Sized so that one run takes a few minutes
# on one core.
ACTIVECLIP_REGIME = "openclipart32"
# 2,000: every configuration's recall@5 still rose about linearly from 500 to 1,000 updates.
ACTIVECLIP_BUDGETS = (250, 500, 1000, 2000)
ACTIVECLIP_SEEDS = (0, 1, 2)
# The first is the headline (docs/results/activeclip.md); speed-ups are reported for each.
ACTIVECLIP_METRICS = (
    "image_to_text_recall@5",
    "text_to_image_recall@5",
    "zero_shot_accuracy",
    "image_to_text_recall@1",
    "text_to_image_recall@1",
)
ACTIVECLIP_CONFIGS = (  # (config, gin file, selection or None for uniform, learning rate)
    ("uniform_lr1e-3", "gin/activeclip_uniform.gin", None, "1e-3"),
    ("uniform_lr2e-3", "gin/activeclip_uniform.gin", None, "2e-3"),
    ("learnability_sample", "gin/activeclip.gin", "sample", "1e-3"),
    # ClassAct's learnability gained most at uniform's better rate: the same two rates here.
    ("learnability_sample_lr2e-3", "gin/activeclip.gin", "sample", "2e-3"),
    ("learnability_joint", "gin/activeclip.gin", "joint", "1e-3"),
)
# The temperature sweep (issue 11, item 1): learnability at other temperatures than the shipped
# one, at 500 updates and at 2,000, where uniform overtook learnability at T = 1 (a softer
# draw keeps more of the data in play). (config, temperature, budgets)
ACTIVECLIP_TEMPERATURES = (
    ("learnability_sample_T0.25", 0.25, (500,)),
    ("learnability_sample_T4", 4.0, ACTIVECLIP_BUDGETS),  # The shipped default.
    ("learnability_sample_T16", 16.0, (500, 2000)),
)
# A draw that softens as the learner overtakes the scoring models: T moves geometrically from
# 1 to 16 over each run (`ActiveLearner.final_temperature`). (config, T, bindings, budgets)
ACTIVECLIP_SCHEDULES = (
    (
        "learnability_sample_T1to16",
        1.0,
        ["ActiveLearner.final_temperature = 16.0"],
        (500, 1000, 2000),
    ),
)
# Is the reference the limit? The shared one is trained on the held-out split, 693 pairs: its
# recall@5 is 0.12 at 600 steps (0.075 / 0.10 / 0.11 at 150 / 300 / 1,200), below uniform's
# 0.19 at 500 updates. This diagnostic reference is the same tiny tower trained 600 steps on the
# learner's own training split (recall@5 0.19): outside the method (a reference is trained on
# held-out or cleaner data), it tests whether a stronger one lifts learnability at 2,000.
# (config, extra bindings, budgets)
ACTIVECLIP_REFERENCES = (
    (
        "learnability_sample_trainref",
        [
            "train_reference.split = 'train'",
            "run.reference_path = 'benchmarks/runs/activeclip/_reference_train/reference.keras'",
        ],
        (1000, 2000),
    ),
)

# Is the reference the limit, within the method? A second regime holds out 30% of the files
# instead of 10% (2,083 pairs for the reference instead of 693; the test split is the same
# files, the learner's training split shrinks from 5,509 to 4,119 pairs) and trains its own
# reference (same tower, same 600 steps) and vocabulary on them. Uniform (both rates) and the
# shipped learnability (T = 4) rerun on its smaller training split. (regime, bindings, configs)
ACTIVECLIP_HELDOUT_REGIME = "openclipart32_heldout30"
ACTIVECLIP_HELDOUT_DIR = "benchmarks/runs/activeclip/_reference_heldout30"
ACTIVECLIP_HELDOUT = [
    "OpenClipArt.heldout_fraction = 0.3",
    f"ClipTask.vocab_dir = '{ACTIVECLIP_HELDOUT_DIR}/vocab'",
    f"run.reference_path = '{ACTIVECLIP_HELDOUT_DIR}/reference.keras'",
]
# 1,500 for per-budget comparisons between 1,000 and 2,000; 3,000 (about 35 epochs of the main
# regime's training pairs, 47 of this one's) because uniform's best was at the ladder's edge.
ACTIVECLIP_HELDOUT_CONFIGS = (  # (config, gin file, selection, learning rate, T, budgets)
    (
        "learnability_sample_T4",
        "gin/activeclip.gin",
        "sample",
        "1e-3",
        4.0,
        (500, 1000, 1500, 2000, 3000),
    ),
    (
        "uniform_lr1e-3",
        "gin/activeclip_uniform.gin",
        None,
        "1e-3",
        None,
        (500, 1000, 1500, 2000, 3000),
    ),
    ("uniform_lr2e-3", "gin/activeclip_uniform.gin", None, "2e-3", None, (1000, 1500, 2000, 3000)),
)


# Uniform's best on the 30% split was at the largest budget (3,000) and the top rate (2e-3) of a
# two-rate sweep: not bracketed (issue 27, item 6). A third rate and a larger budget bracket it.
# (config, gin file, selection, learning rate, T, budgets)
ACTIVECLIP_HELDOUT_BRACKET = (
    (
        "uniform_lr4e-3",
        "gin/activeclip_uniform.gin",
        None,
        "4e-3",
        None,
        (1000, 1500, 2000, 3000, 4500),
    ),
    ("uniform_lr2e-3", "gin/activeclip_uniform.gin", None, "2e-3", None, (4500,)),
    ("uniform_lr1e-3", "gin/activeclip_uniform.gin", None, "1e-3", None, (4500,)),
)


def _learner_sized_reference(directory):
    """Bindings of a reference of the learner's size ("small") trained into `directory`."""
    return [
        "ClipTask.reference_size = 'small'",
        f"run.reference_path = '{directory}/reference.keras'",
    ]


# With precomputed reference losses the reference's size costs nothing per step: a reference of
# the learner's size on each regime's held-out split, at T = 4 (the shipped default). Is it the
# reference's size or its held-out data (693 pairs or 2,083) that limits it?
# (regime, extra bindings, budgets)
ACTIVECLIP_SIZED_REFERENCES = (
    (
        ACTIVECLIP_REGIME,
        _learner_sized_reference("benchmarks/runs/activeclip/_reference_small"),
        (1000, 2000, 3000),
    ),
    (
        ACTIVECLIP_HELDOUT_REGIME,
        ACTIVECLIP_HELDOUT + _learner_sized_reference(f"{ACTIVECLIP_HELDOUT_DIR}_small"),
        (1000, 1500, 2000, 3000),
    ),
)
# The main regime at 3,000 updates too: uniform (both rates) and the shipped learnability.
# (config, gin file, selection, learning rate, T, budgets)
ACTIVECLIP_LONG = tuple(
    (c, g, s, lr, t, (3000,)) for c, g, s, lr, t, _ in ACTIVECLIP_HELDOUT_CONFIGS
)


def _activeclip_plan(smoke):
    """`(regime, config, gin file, selection, lr, T, extra bindings, budgets)` of every config."""
    # The learnability runs without a temperature in their name sample at T = 1, the default
    # when the ladder ran; bound here so that the shipped default (now 4) leaves them as run.
    main = ACTIVECLIP_REGIME
    plan = [
        (main, c, g, s, lr, s and 1.0, [], ACTIVECLIP_BUDGETS) for c, g, s, lr in ACTIVECLIP_CONFIGS
    ]
    if not smoke:
        active = ("gin/activeclip.gin", "sample", "1e-3")
        plan += [(main, c, *active, t, [], b) for c, t, b in ACTIVECLIP_TEMPERATURES]
        plan += [(main, c, *active, t, extra, b) for c, t, extra, b in ACTIVECLIP_SCHEDULES]
        plan += [(main, c, *active, 1.0, extra, b) for c, extra, b in ACTIVECLIP_REFERENCES]
        plan += [(main, c, g, s, lr, t, [], b) for c, g, s, lr, t, b in ACTIVECLIP_LONG]
        plan += [
            (ACTIVECLIP_HELDOUT_REGIME, c, g, s, lr, t, ACTIVECLIP_HELDOUT, b)
            for c, g, s, lr, t, b in ACTIVECLIP_HELDOUT_CONFIGS
        ]
        plan += [
            (ACTIVECLIP_HELDOUT_REGIME, c, g, s, lr, t, ACTIVECLIP_HELDOUT, b)
            for c, g, s, lr, t, b in ACTIVECLIP_HELDOUT_BRACKET
        ]
        sized = "learnability_sample_T4_refsmall"
        plan += [(r, sized, *active, 4.0, extra, b) for r, extra, b in ACTIVECLIP_SIZED_REFERENCES]
    return plan


def _activeclip_budgets():
    """`{regime: sorted budgets}` over every configuration of the full suite."""
    budgets = {}
    for regime, *_, config_budgets in _activeclip_plan(smoke=False):
        budgets.setdefault(regime, set()).update(config_budgets)
    return {regime: sorted(b) for regime, b in budgets.items()}


def _activeclip_suite(smoke, reference_path):
    """ActiveCLIP on Open Clip Art: budget ladders, 3 seeds, decayed schedules.

    Every run shares one vocabulary (learned once beside the reference, copied
    into each run directory), so the reference's token ids are the learner's.
    """
    vocab = os.path.join(os.path.dirname(reference_path), "vocab")
    seeds = ACTIVECLIP_SEEDS[:1] if smoke else ACTIVECLIP_SEEDS
    runs = []
    for regime, config, gin_file, selection, lr, temperature, extra, budgets in _activeclip_plan(
        smoke
    ):
        budgets = (10, 20) if smoke else budgets
        for seed in seeds:
            for budget in budgets:
                bindings = [
                    f"ClipTask.vocab_dir = '{vocab}'",
                    "run.super_batch_size = 128",
                    "ActiveLearner.keep_fraction = 0.5",
                    f"run.seed = {seed}",
                    f"run.num_steps = {budget}",
                    f"run.eval_every = {budget // EVALS_PER_RUN}",
                    f"make_optimizer.learning_rate = {lr}",
                    "make_optimizer.schedule = 'cosine'",
                    "run.write_report = False",
                    "run.record_selections = False",
                    "run.selection_log_every = 0",
                    f"run.reference_path = '{reference_path}'",
                ]
                if selection:
                    bindings += [
                        "ActiveLearner.policy = 'learnability'",
                        f"ActiveLearner.selection = '{selection}'",
                    ]
                if temperature is not None:
                    bindings.append(f"ActiveLearner.temperature = {temperature}")
                if selection == "sample":
                    # Per-pair scores of a frozen reference on fixed data: looked up.
                    bindings.append("run.reference_losses = 'auto'")
                if smoke:
                    bindings.append("train_reference.num_steps = 20")
                # Later bindings win: a diagnostic's own reference replaces the shared one.
                bindings += extra
                runs.append(_ladder_run(regime, config, gin_file, bindings, seed, budget, 0.5))
    return runs


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


@dataclasses.dataclass(frozen=True)
class LadderSuite:
    """A budget-ladder suite (`_run_ladder`).

    Attributes:
        make_runs: `fn(smoke, reference_path) -> [Run]`.
        reference_gin: Gin file appended to the first active run's files to
            train the shared reference.
        protocol: What the results file says about the protocol.
        metrics: None: the summary compares `test_accuracy`; else the metrics
            compared, each one's speed-ups keyed by its name
            (`ladder.summarize_by_metric`).
    """

    make_runs: object
    reference_gin: str
    protocol: dict
    metrics: tuple = None
    reference_data: str = "clean_heldout10k"  # What the references of runs that don't say saw.


# name -> (runs factory, metric compared at the baseline's best).
SUITES = {"classact_constant_lr": (_classact_constant_lr_suite, "test_accuracy")}
SUITES["replay"] = (_replay_suite, "test_accuracy")
# name -> budget-ladder suite (`_run_ladder`).
LADDER_SUITES = {
    "classact": LadderSuite(
        _classact_suite,
        "gin/reference.gin",
        {
            "regimes": {k: list(v) for k, v in CLASSACT_REGIMES.items()},
            "seeds": list(CLASSACT_SEEDS),
            "sub_batch_size": SUB_BATCH,
            "schedule": "cosine decay to zero at each run's budget",
        },
    ),
    "activeclip": LadderSuite(
        _activeclip_suite,
        "gin/activeclip_reference.gin",
        {
            "regimes": {r: [None, None, b] for r, b in _activeclip_budgets().items()},
            "seeds": list(ACTIVECLIP_SEEDS),
            "sub_batch_size": SUB_BATCH,
            "schedule": "cosine decay to zero at each run's budget",
            "headline_metric": ACTIVECLIP_METRICS[0],
        },
        ACTIVECLIP_METRICS,
        reference_data="clean_heldout",
    ),
}
# name -> main(out_dir, smoke) for suites that are not sets of training runs.
CUSTOM_SUITES = {}
CUSTOM_SUITES["step_cost"] = step_cost.main
# It reruns ladder runs: it gets this module (which may be `__main__`) rather than import it.
CUSTOM_SUITES["activeclip_coverage"] = functools.partial(
    selection_coverage.main, benchmark=sys.modules[__name__]
)
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
            stderr=subprocess.STDOUT,  # The run keeps TensorFlow's start-up log quiet itself.
        )
    if proc.returncode:
        raise RunFailed(
            proc.returncode, f"run {run.name} failed; see {os.path.dirname(path)}/log.txt"
        )
    return run.name, time.time() - start, "ran"


class RunFailed(RuntimeError):
    """A run's command failed; `returncode` tells a checkpoint of another configuration apart."""

    def __init__(self, returncode, message):
        super().__init__(message)
        self.returncode = returncode


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
    """Each group's curves from their first evaluation; a label's several runs as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from active_keras.analysis import report

    groups = list(results)
    fig, axes = plt.subplots(len(groups), 2, figsize=(13, 4.5 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        res = results[group]
        for col, (xkey, xlabel) in enumerate(
            (("learner_updates", "learner updates"), ("total_flops", "total training FLOPs"))
        ):
            ax = axes[row][col]
            # Runs of one label are one configuration (over seeds): a mean and its spread.
            by_label = {}
            for name in res["curves"]:
                by_label.setdefault(res["runs"][name]["label"], []).append(name)
            plotted = []
            for label, names in by_label.items():
                plotted += report.draw_curves(
                    ax,
                    [res["curves"][n] for n in names],
                    metric,
                    xkey,
                    label,
                    ls="--" if res["runs"][names[0]]["baseline"] else "-",
                    lw=2.5 if res["baseline"] in names else 1.2,
                )
            ax.axhline(res["runs"][res["baseline"]]["target"], color="grey", lw=0.6)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_title(f"{group}: {metric.replace('_', ' ')} vs {xlabel}")
            if plotted:
                ax.set_ylim(max(min(plotted) - 0.01, 0), None)
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def config_hash(run):
    """A digest of the run's full gin configuration (files and bindings, as gin parsed them)."""
    import gin

    from active_keras import main as cli

    cli.parse_config(run.gin_files, run.bindings)
    text = gin.config_str()
    gin.clear_config()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stored_run(store, run):
    """The committed run.json of `run`, or None."""
    path = os.path.join(store, run.name, "run.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _reusable(store, run, digest):
    stored = _stored_run(store, run)
    if stored is None or stored.get("config_hash") != digest:
        return False
    return _complete(os.path.join(store, run.name, "metrics.json"), run.bindings)


def _execute_ladder(run, runs_dir, store, digest, reuse):
    """Runs one ladder run (unless its committed files match `digest`) and stores its files.

    A run killed in an earlier sitting resumes from its checkpoint. Only when
    that checkpoint is of another configuration (the command's own exit
    status, `checkpointing.EXIT_OTHER_RUN`) does the run start over once,
    from scratch, with its old folder moved aside (`<name>.other-<time>`),
    not deleted. Any other failure (an OOM kill, a NaN) keeps the checkpoints
    for the next sitting to resume from.
    """
    if reuse and _reusable(store, run, digest):
        return run.name, 0.0, "reused"
    try:
        name, seconds, how = _execute(run, runs_dir, smoke=False, reuse=False)
    except RunFailed as e:
        from active_keras.training import checkpointing  # TensorFlow: only on this path.

        if e.returncode != checkpointing.EXIT_OTHER_RUN:
            raise
        folder = os.path.join(runs_dir, run.name)
        aside = f"{folder}.other-{time.strftime('%Y%m%d-%H%M%S')}"
        os.rename(folder, aside)
        print(f"{run.name}: checkpoints of another configuration, moved to {aside}", flush=True)
        name, seconds, how = _execute(run, runs_dir, smoke=False, reuse=False)
        how += " (from scratch: its old checkpoint was of another configuration)"
    src, dst = os.path.join(runs_dir, run.name), os.path.join(store, run.name)
    os.makedirs(dst, exist_ok=True)
    for file in ("metrics.json", "operative_config.gin"):
        shutil.copyfile(os.path.join(src, file), os.path.join(dst, file))
    info = dict(run.ladder, gin_files=run.gin_files, bindings=run.bindings)
    # All sittings of a resumed run (timing.json), not only this one.
    timing = os.path.join(src, "timing.json")
    if os.path.exists(timing):
        with open(timing) as f:
            seconds = json.load(f)["wall_seconds"]
    info.update(config_hash=digest, seconds=round(seconds, 1), finished=time.strftime("%F %T"))
    with open(os.path.join(dst, "run.json"), "w") as f:
        json.dump(info, f, indent=1)
    return name, seconds, how


def ladder_record(store, name, metrics=None, reference_data="clean_heldout10k"):
    """The summary record of one stored ladder run (see `active_keras.analysis.ladder.summarize`).

    With `metrics`, the record also has `finals` and `peaks`: each metric's
    final and best value, and `final_accuracy` is the first metric's.
    """
    with open(os.path.join(store, name, "run.json")) as f:
        info = json.load(f)
    with open(os.path.join(store, name, "metrics.json")) as f:
        metrics_file = json.load(f)
    curve = metrics_file["curve"]
    final = curve[-1]
    forward = metrics_file["forward_flops_per_example"]
    steps = [b for b in info["bindings"] if b.startswith("train_reference.num_steps")]
    ref_steps = int(steps[-1].split("=")[1]) if steps else REFERENCE_STEPS
    headline = metrics[0] if metrics else "test_accuracy"
    pretraining = None
    if "reference" in forward:
        # The run's own ledger fact (both references when cross-fitted), else as configured.
        pretraining = metrics_file.get("reference_pretraining_flops") or (
            3 * forward["reference"] * ref_steps * REFERENCE_BATCH
        )
    record = {
        "name": name,
        "regime": info["regime"],
        "config": info["config"],
        "seed": info["seed"],
        "budget": info["budget"],
        "policy": metrics_file["policy"],
        "keep_fraction": metrics_file["keep_fraction"],
        "baseline": metrics_file["policy"] == "uniform",
        "final_accuracy": final[headline],
        "peak_accuracy": max(p[headline] for p in curve),
        "final_learning_rate": final["learning_rate"],
        "total_flops": final["total_flops"],
        # 3 forward passes a training example; the summary counts it in the headline ratio.
        "reference_pretraining_flops": pretraining,
        "seconds": info.get("seconds"),
        # What the learner trained on, what the reference saw, and the matched baseline's data.
        "train_data": info.get("train_data", "train"),
        "reference_data": info.get(
            "reference_data", None if metrics_file["policy"] == "uniform" else reference_data
        ),
        "baseline_train_data": info.get("baseline_train_data", "train"),
    }
    if "validation_accuracy" in final:  # Picks are made on validation where runs have it.
        record["final_validation_accuracy"] = final["validation_accuracy"]
    if metrics:
        record["finals"] = {m: final[m] for m in metrics}
        record["peaks"] = {m: max(p[m] for p in curve) for m in metrics}
    return record


# gin/fashion_mnist.gin's train_reference; ActiveCLIP's bind theirs (gin/openclipart.gin: 600).
REFERENCE_STEPS, REFERENCE_BATCH = 2000, 128


def _reference_path(run):
    """The reference path a run binds last (later bindings win), or None."""
    paths = [b.split("=", 1)[1].strip() for b in run.bindings if b.startswith("run.reference_path")]
    return paths[-1].strip("'\"") if paths else None


def _run_ladder(suite):
    smoke = FLAGS.smoke
    runs_dir = FLAGS.runs_dir or os.path.join(
        ROOT, "benchmarks", "runs_smoke" if smoke else "runs", FLAGS.suite
    )
    store = FLAGS.store or (
        os.path.join(runs_dir, "stored")
        if smoke
        else os.path.join(ROOT, "benchmarks", "results", f"{FLAGS.suite}_runs")
    )
    out_dir = FLAGS.out_dir or (
        os.path.join(runs_dir, "results") if smoke else os.path.join(ROOT, "benchmarks", "results")
    )
    reference = os.path.join(runs_dir, "_reference", "reference.keras")
    # Relative to the repository where possible, so that the configuration hash is portable.
    if os.path.abspath(reference).startswith(ROOT + os.sep):
        reference = os.path.relpath(reference, ROOT)
    runs = suite.make_runs(smoke, reference)
    if FLAGS.select:
        runs = [r for r in runs if r.name.startswith(tuple(FLAGS.select))]
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    digests = {r.name: config_hash(r) for r in runs}
    failed = []
    if not FLAGS.summarize_only:
        todo = [r for r in runs if not (FLAGS.reuse and _reusable(store, r, digests[r.name]))]
        print(f"{len(runs) - len(todo)} runs reused, {len(todo)} to run", flush=True)
        # Each reference the active runs load (the shared one, or a regime's or diagnostic's
        # own), trained with the first such run's set-up before runs start in parallel.
        firsts = {}
        for r in todo:
            if not r.baseline:
                firsts.setdefault(_reference_path(r) or reference, r)
        for path, first in firsts.items():
            name = "_reference" if path == reference else os.path.basename(os.path.dirname(path))
            _execute(
                Run(name, first.gin_files + [suite.reference_gin], first.bindings),
                runs_dir,
                smoke=False,
                reuse=False,
            )
        with concurrent.futures.ThreadPoolExecutor(FLAGS.jobs) as pool:
            futures = [
                pool.submit(_execute_ladder, r, runs_dir, store, digests[r.name], False)
                for r in todo
            ]
            for fut in concurrent.futures.as_completed(futures):
                try:
                    name, seconds, how = fut.result()
                except RuntimeError as e:  # Said now; the other runs go on.
                    failed.append(str(e))
                    print(f"FAILED: {e}", flush=True)
                    continue
                print(f"{name}: {how} ({seconds:.0f} s)", flush=True)
    # Only stored runs of exactly this configuration count (a stale one is listed as not run).
    done = [r for r in runs if _reusable(store, r, digests[r.name])]
    records = [ladder_record(store, r.name, suite.metrics, suite.reference_data) for r in done]
    from active_keras.analysis import ladder

    if suite.metrics:
        summary = ladder.summarize_by_metric(records, suite.metrics)
    else:
        summary = ladder.summarize(records)
    results = {
        "suite": FLAGS.suite,
        "smoke": smoke,
        "command": "python tools/benchmark.py " + " ".join(sys.argv[1:]),
        "protocol": suite.protocol,
        "not_run": [r.name for r in runs if r not in done],
        "seconds_this_call": round(time.time() - start),
        "run_seconds_total": round(sum(r["seconds"] or 0 for r in records)),
        "summary": summary,
        "runs": records,
    }
    with open(os.path.join(out_dir, f"{FLAGS.suite}.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot_ladder(results["summary"], os.path.join(out_dir, f"{FLAGS.suite}.png"), suite.metrics)
    print(f"{len(done)} of {len(runs)} runs done; summary in {out_dir}/{FLAGS.suite}.json")
    if failed:
        sys.exit(f"{len(failed)} run(s) failed:\n" + "\n".join(failed))


def plot_ladder(summary, path, metrics=None):
    """Final metric against budget (mean and spread over seeds).

    One panel a regime, side by side; or, with `metrics` (a summary keyed by
    metric), one row a regime and one column a metric.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(summary) or ["(no runs)"]
    rows, cols = (len(regimes), len(metrics)) if metrics else (1, len(regimes))
    panels = [(r, m) for r in regimes for m in (metrics or [None])]
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, (regime, metric) in zip(axes.flat, panels, strict=True):
        for config, row in summary.get(regime, {}).items():
            if config.startswith("_"):
                continue
            mean, std = row["final_accuracy_mean"], row["final_accuracy_std"]
            if metric is not None:
                mean, std = mean[metric], std[metric]
            ax.errorbar(
                row["budgets"],
                mean,
                yerr=std,
                fmt="--o" if row["is_baseline"] else "-o",
                ms=3,
                capsize=3,
                label=f"{config} ({row['seeds']} seeds)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("budget (learner updates; LR decayed to 0 at the budget)")
        ax.set_ylabel(f"final {metric or 'test accuracy'}")
        ax.set_title(regime)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv):
    del argv
    if FLAGS.suite in LADDER_SUITES:
        return _run_ladder(LADDER_SUITES[FLAGS.suite])
    if FLAGS.suite in CUSTOM_SUITES:
        return CUSTOM_SUITES[FLAGS.suite](FLAGS.out_dir, FLAGS.smoke)
    if FLAGS.suite not in SUITES:
        raise app.UsageError(
            f"Unknown suite {FLAGS.suite!r}; have "
            f"{sorted(SUITES) + sorted(LADDER_SUITES) + sorted(CUSTOM_SUITES)}."
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
