"""Speed-up at equal accuracy over a ladder of budget-matched, decayed runs (METHOD.md).

Every run of a ladder trains for a budget of N learner updates with its learning
rate decayed to zero at N, so its *final* accuracy is what that budget buys.
For a baseline budget N, the method's equivalent budget M is where its final
accuracy first reaches the baseline's, interpolated linearly in log-budget
between the ladder's points; the updates speed-up is N / M, and the total-FLOP
speed-up compares the FLOPs each spends to get there. The headline compares
against the baseline's best result over all budgets.

Example:

```python
from active_keras.analysis import ladder

runs = [  # One record per (config, seed, budget) run.
    {"regime": "noise20", "config": "uniform_lr1e-3", "baseline": True, "seed": 0,
     "budget": 1500, "final_accuracy": 0.88, "total_flops": 2.4e12, ...},
    ...
]
summary = ladder.summarize(runs)
summary["noise20"]["learnability_keep0.5"]["updates_speedup"]
```
"""

import math
import statistics


def budget_reaching(budgets, values, target):
    """The budget at which a ladder's final `values` first reach `target`.

    Args:
        budgets: Increasing budgets of the ladder.
        values: The final metric at each budget.
        target: The value to reach.

    Returns:
        `(budget, at_smallest)`: the budget, interpolated linearly in
        log-budget between the first point that reaches `target` and the one
        before it; `at_smallest` is True when the smallest budget already
        reaches it (the returned budget is then that smallest budget, an upper
        bound, and speed-ups computed from it are lower bounds). `(None, False)`
        when no budget reaches `target`.
    """
    for i, (budget, value) in enumerate(zip(budgets, values, strict=True)):
        if value >= target:
            if i == 0:
                return float(budget), True
            lo, hi = budgets[i - 1], budget
            before = values[i - 1]
            frac = (target - before) / (value - before)  # value > target > before here.
            return math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo))), False
    return None, False


def linear_at(budgets, values, budget):
    """`values` (for example total FLOPs, linear in the budget) interpolated at `budget`."""
    if budget <= budgets[0]:
        return values[0] * budget / budgets[0]
    for i in range(1, len(budgets)):
        if budget <= budgets[i]:
            b0, b1, v0, v1 = budgets[i - 1], budgets[i], values[i - 1], values[i]
            return v0 + (v1 - v0) * (budget - b0) / (b1 - b0)
    return values[-1] * budget / budgets[-1]


STD_DDOF = 1  # Sample std over seeds: with 3 seeds the population std understates it by 18%.


def _std(values):
    return statistics.stdev(values) if len(values) > 1 else None


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), _std(values)


def _ladders(records, key="final_accuracy"):
    """{seed: (budgets, final `key` values, total flops)} of one configuration."""
    out = {}
    for seed in sorted({r["seed"] for r in records}):
        mine = sorted((r for r in records if r["seed"] == seed), key=lambda r: r["budget"])
        out[seed] = (
            [r["budget"] for r in mine],
            [r[key] for r in mine],
            [r["total_flops"] for r in mine],
        )
    return out


def _speedups(ladders, target_budget, target, target_flops, pretraining=0.0):
    """Per seed: updates and FLOP speed-ups of reaching `target`, and whether bounded.

    Returns `(updates, flops, flops_with_pretraining, bounded)`: the third
    counts `pretraining` (the reference's) on the method's side.
    """
    updates, flop_ratios, with_pretraining, bounded = [], [], [], []
    for budgets, accuracies, total_flops in ladders.values():
        m, at_smallest = budget_reaching(budgets, accuracies, target)
        if m is None:
            updates.append(None)
            flop_ratios.append(None)
            with_pretraining.append(None)
            continue
        spent = linear_at(budgets, total_flops, m)
        updates.append(target_budget / m)
        flop_ratios.append(target_flops / spent)
        with_pretraining.append(target_flops / (spent + pretraining))
        bounded.append(at_smallest)
    return updates, flop_ratios, with_pretraining, any(bounded)


def _config_row(runs, picked_on):
    budgets = sorted({r["budget"] for r in runs})
    finals = [[r["final_accuracy"] for r in runs if r["budget"] == b] for b in budgets]
    flops = [[r["total_flops"] for r in runs if r["budget"] == b] for b in budgets]
    first = runs[0]
    uniform = bool(first["baseline"])
    row = {
        "policy": first["policy"],
        "keep_fraction": first["keep_fraction"],
        "is_baseline": uniform,
        # The train_data key of the uniform baseline this configuration is compared with.
        "baseline": first.get("baseline_train_data", "train"),
        "seeds": len({r["seed"] for r in runs}),
        "budgets": budgets,
        "runs_per_budget": [len(f) for f in finals],
        "final_accuracy_mean": [statistics.fmean(f) for f in finals],
        "final_accuracy_std": [_std(f) for f in finals],
        "std_ddof": STD_DDOF,
        "total_flops_mean": [statistics.fmean(f) for f in flops],
        "reference_pretraining_flops": 0.0 if uniform else first.get("reference_pretraining_flops"),
        "_ladders": _ladders(runs),
    }
    if uniform:
        row["train_data"] = first.get("train_data", "train")
    else:
        row["reference_data"] = first.get("reference_data")
    if picked_on == "validation":
        valid = [
            [r["final_validation_accuracy"] for r in runs if r["budget"] == b] for b in budgets
        ]
        row["final_validation_accuracy_mean"] = [statistics.fmean(v) for v in valid]
        row["_pick_ladders"] = _ladders(runs, "final_validation_accuracy")
        row["_pick_means"] = row["final_validation_accuracy_mean"]
    else:
        row["_pick_ladders"] = row["_ladders"]
        row["_pick_means"] = row["final_accuracy_mean"]
    row["peak_accuracy_mean"] = max(row["final_accuracy_mean"])
    return row


def _baseline_cells(rows):
    """`[(pick mean, budget, config, test mean, flops mean, pick ladders' target)]` of `rows`."""
    cells = []
    for config, row in rows.items():
        for i, b in enumerate(row["budgets"]):
            cells.append(
                (
                    row["_pick_means"][i],
                    b,
                    config,
                    row["final_accuracy_mean"][i],
                    row["total_flops_mean"][i],
                )
            )
    return cells


def _best_cell(cells, max_budget=None):
    """The best baseline cell (by the pick metric), among those within `max_budget`."""
    within = [c for c in cells if max_budget is None or c[1] <= max_budget]
    return max(within, key=lambda c: (c[0], -c[1])) if within else None


def _compare(row, cell):
    """`row`'s speed-up fields against baseline `cell`, read on test, and its pick score."""
    pick_mean, budget, _, test_mean, flops_mean = cell
    pretraining = row["reference_pretraining_flops"] or 0.0
    updates, flop_ratios, with_pre, bounded = _speedups(
        row["_ladders"], budget, test_mean, flops_mean, pretraining
    )
    fields = _speedup_fields(updates, flop_ratios, with_pre, bounded)
    pick_updates = _speedups(row["_pick_ladders"], budget, pick_mean, flops_mean)[0]
    reached = [u for u in pick_updates if u is not None]
    # How the arm's configurations are ranked: every seed reaching on the pick metric first.
    score = (len(reached) == len(pick_updates), statistics.fmean(reached) if reached else 0.0)
    return fields, score


def summarize(records):
    """The suite's summary, regime by regime and configuration by configuration.

    Configurations, targets and picks are chosen on validation where every
    run of a regime was evaluated on it (`final_validation_accuracy`), else on
    test (the earlier regimes, marked `"picked_on": "test"`); what is reported
    is always read on test (`final_accuracy`).

    Args:
        records: One dict per finished run with `regime`, `config` (the run
            name within the regime, seeds and budgets aside), `baseline`
            (True for uniform), `policy`, `keep_fraction`, `seed`, `budget`,
            `final_accuracy` (test), `total_flops` (everything spent in
            training) and optionally `final_validation_accuracy`,
            `reference_pretraining_flops`, `train_data` (what a uniform run
            trained on: "train", "train+heldout_clean10k", ...),
            `reference_data` (what a selection run's reference saw) and
            `baseline_train_data` (the `train_data` of its matched baseline).

    Returns:
        `{regime: {config: row}}`. Every row has `policy`, `keep_fraction`,
        `is_baseline`, `baseline` (the `train_data` key it is compared with),
        `seeds`, `budgets`, `final_accuracy_mean` / `_std` (test, lists over
        budgets; sample std, `std_ddof` 1), `peak_accuracy_mean`, and, against
        its matched baseline's pick: `updates_speedup`, `flops_speedup`
        (pre-training of the reference excluded: the amortised ratio of a
        reused reference) and `flops_speedup_incl_pretraining` (means over
        seeds; None unless every seed reaches the target) with their `_std`,
        `seeds_reaching`, `reached_at_smallest_budget` (then a lower bound),
        `picked` (the arm's configuration picked on `picked_on`), and
        `per_budget`: the same against the best baseline cell within each
        budget. A regime's `"_baselines"` holds, per `train_data`, the pick
        (`picked_on`, config, budget, test accuracy); `"_baseline"` is the
        one for "train"; `"_picks"` maps each arm to its picked configuration.
    """
    summary = {}
    for regime in dict.fromkeys(r["regime"] for r in records):
        mine = [r for r in records if r["regime"] == regime]
        picked_on = "validation" if all("final_validation_accuracy" in r for r in mine) else "test"
        configs = {}
        for config in dict.fromkeys(r["config"] for r in mine):
            configs[config] = _config_row([r for r in mine if r["config"] == config], picked_on)
        groups = {}
        for config, row in configs.items():
            if row["is_baseline"]:
                groups.setdefault(row["train_data"], {})[config] = row
        cells = {data: _baseline_cells(rows) for data, rows in groups.items()}
        baselines = {}
        for data, group_cells in cells.items():
            pick, budget, config, test_mean, flops_mean = _best_cell(group_cells)
            baselines[data] = {
                "picked_on": picked_on,
                "train_data": data,
                "config": config,
                "budget": budget,
                "final_accuracy_mean": test_mean,
                "final_accuracy_std": configs[config]["final_accuracy_std"][
                    configs[config]["budgets"].index(budget)
                ],
                "total_flops_mean": flops_mean,
                "at_largest_budget": budget == max(c[1] for c in group_cells),
            }
            if picked_on == "validation":
                baselines[data]["final_validation_accuracy_mean"] = pick
        arms = {}
        for config, row in configs.items():
            row["picked"] = False
            if row["baseline"] not in cells:
                continue  # Its matched baseline has not run yet (a partial summary).
            group_cells = cells[row["baseline"]]
            fields, score = _compare(row, _best_cell(group_cells))
            row.update(fields)
            row["per_budget"] = {}
            for b in sorted({c[1] for c in group_cells}):
                cell = _best_cell(group_cells, b)
                row["per_budget"][str(b)] = dict(
                    _compare(row, cell)[0],
                    baseline_config=cell[2],
                    baseline_budget=cell[1],
                    target=cell[3],
                )
            if not row["is_baseline"]:
                arm = _arm(row)
                arms.setdefault(arm, []).append((score, max(row["_pick_means"]), config))
        picks = {}
        for arm, ranked in arms.items():
            # Picked on `picked_on`: the largest speed-up reached by every seed, else the peak.
            best = max(ranked)[2]
            configs[best]["picked"] = True
            picks[arm] = best
        summary[regime] = _public(configs)
        summary[regime]["_baselines"] = baselines
        if "train" in baselines:
            summary[regime]["_baseline"] = baselines["train"]
        summary[regime]["_picks"] = picks
        summary[regime]["_picked_on"] = picked_on
    return summary


def _arm(row):
    """A selection arm: its configurations differ only in learning rate."""
    return f"{row['policy']}_keep{row['keep_fraction']:g}_{row['reference_data']}"


# Fields of a summary row that depend on the metric compared.
METRIC_FIELDS = (
    "final_accuracy_mean",
    "final_accuracy_std",
    "peak_accuracy_mean",
    "updates_speedup",
    "updates_speedup_std",
    "flops_speedup",
    "flops_speedup_std",
    "flops_speedup_incl_pretraining",
    "flops_speedup_incl_pretraining_std",
    "seeds_reaching",
    "reached_at_smallest_budget",
    "picked",
    "per_budget",
)


def summarize_by_metric(records, metrics):
    """`summarize` for several metrics at once: each metric's fields keyed by its name.

    Args:
        records: As for `summarize`, each with `finals`: the run's final value
            of every metric in `metrics`.
        metrics: Metric names, e.g. `("image_to_text_recall@5", "zero_shot_accuracy")`.

    Returns:
        `summarize`'s layout, except that every field in `METRIC_FIELDS` (among
        them `updates_speedup` and `flops_speedup`) is `{metric: value}`, and a
        regime's `"_baseline"` is `{metric: baseline}` (the best uniform run can
        differ from metric to metric).
    """
    by_metric = {
        m: summarize([dict(r, final_accuracy=r["finals"][m]) for r in records]) for m in metrics
    }
    first = by_metric[metrics[0]]
    summary = {}
    for regime, configs in first.items():
        summary[regime] = {}
        for config, row in configs.items():
            if config.startswith("_"):  # Baselines and picks can differ from metric to metric.
                summary[regime][config] = {m: by_metric[m][regime][config] for m in metrics}
                continue
            merged = {k: v for k, v in row.items() if k not in METRIC_FIELDS}
            for field in METRIC_FIELDS:
                if field in row:
                    merged[field] = {m: by_metric[m][regime][config][field] for m in metrics}
            summary[regime][config] = merged
    return summary


def _speedup_fields(updates, flop_ratios, with_pretraining, bounded):
    reached = [u for u in updates if u is not None]
    all_reach = len(reached) == len(updates)  # A target counts only when every seed reaches it.
    fields = {}
    for name, values in (
        ("updates_speedup", updates),
        ("flops_speedup", flop_ratios),
        ("flops_speedup_incl_pretraining", with_pretraining),
    ):
        mean, std = _mean_std(values)
        fields[name] = mean if all_reach else None
        fields[f"{name}_std"] = std if all_reach else None
    fields.update(
        seeds=len(updates),
        seeds_reaching=len(reached),
        reached_at_smallest_budget=bool(bounded),
    )
    return fields


def _public(configs):
    return {
        c: {k: v for k, v in row.items() if not k.startswith("_")} for c, row in configs.items()
    }
