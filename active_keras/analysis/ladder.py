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


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _ladders(records):
    """{seed: (budgets, final accuracies, total flops)} of one configuration."""
    out = {}
    for seed in sorted({r["seed"] for r in records}):
        mine = sorted((r for r in records if r["seed"] == seed), key=lambda r: r["budget"])
        out[seed] = (
            [r["budget"] for r in mine],
            [r["final_accuracy"] for r in mine],
            [r["total_flops"] for r in mine],
        )
    return out


def _speedups(ladders, target_budget, target, target_flops):
    """Per seed: updates and FLOP speed-ups of reaching `target`, and whether bounded."""
    updates, flop_ratios, bounded = [], [], []
    for budgets, accuracies, total_flops in ladders.values():
        m, at_smallest = budget_reaching(budgets, accuracies, target)
        if m is None:
            updates.append(None)
            flop_ratios.append(None)
            continue
        updates.append(target_budget / m)
        flop_ratios.append(target_flops / linear_at(budgets, total_flops, m))
        bounded.append(at_smallest)
    return updates, flop_ratios, any(bounded)


def summarize(records):
    """The suite's summary, regime by regime and configuration by configuration.

    Args:
        records: One dict per finished run with `regime`, `config` (the run
            name within the regime, seeds and budgets aside), `baseline`
            (True for uniform), `policy`, `keep_fraction`, `seed`, `budget`,
            `final_accuracy`, `total_flops` (everything spent in training) and
            optionally `reference_pretraining_flops`.

    Returns:
        `{regime: {config: row}}`. Every row has `policy`, `keep_fraction`,
        `seeds` (how many), `budgets`, `final_accuracy_mean` / `_std` (lists
        over budgets), `peak_accuracy_mean` (best budget's mean), and, against
        the best baseline (uniform configuration and budget with the highest
        mean final accuracy): `updates_speedup`, `flops_speedup` (means over
        seeds; None unless every seed reaches the target) with `_std`,
        `reached_at_smallest_budget` (the speed-up is then a lower bound),
        `seeds_reaching`, and `per_budget`: the same speed-ups against the
        best baseline at each of the baseline's budgets. Each regime also has
        a `"_baseline"` entry naming the configuration and budget used.
    """
    summary = {}
    for regime in dict.fromkeys(r["regime"] for r in records):
        mine = [r for r in records if r["regime"] == regime]
        configs = {}
        for config in dict.fromkeys(r["config"] for r in mine):
            runs = [r for r in mine if r["config"] == config]
            budgets = sorted({r["budget"] for r in runs})
            finals = [[r["final_accuracy"] for r in runs if r["budget"] == b] for b in budgets]
            flops = [[r["total_flops"] for r in runs if r["budget"] == b] for b in budgets]
            configs[config] = {
                "policy": runs[0]["policy"],
                "keep_fraction": runs[0]["keep_fraction"],
                "baseline": bool(runs[0]["baseline"]),
                "seeds": len({r["seed"] for r in runs}),
                "budgets": budgets,
                "runs_per_budget": [len(f) for f in finals],
                "final_accuracy_mean": [statistics.fmean(f) for f in finals],
                "final_accuracy_std": [statistics.pstdev(f) for f in finals],
                "total_flops_mean": [statistics.fmean(f) for f in flops],
                "reference_pretraining_flops": runs[0].get("reference_pretraining_flops"),
                "_ladders": _ladders(runs),
            }
        for row in configs.values():
            row["peak_accuracy_mean"] = max(row["final_accuracy_mean"])
        baselines = {c: row for c, row in configs.items() if row["baseline"]}
        if not baselines:
            summary[regime] = _public(configs)
            continue
        # The tuned baseline at each budget: the best uniform configuration there.
        best_at = {}
        for config, row in baselines.items():
            for b, acc, fl in zip(
                row["budgets"], row["final_accuracy_mean"], row["total_flops_mean"], strict=True
            ):
                if b not in best_at or acc > best_at[b][1]:
                    best_at[b] = (config, acc, fl)
        head_budget = max(best_at, key=lambda b: best_at[b][1])
        head_config, head_acc, head_flops = best_at[head_budget]
        for row in configs.values():
            ladders = row["_ladders"]
            updates, flop_ratios, bounded = _speedups(ladders, head_budget, head_acc, head_flops)
            row.update(_speedup_fields(updates, flop_ratios, bounded))
            row["per_budget"] = {}
            for b in sorted(best_at):
                u, f, bnd = _speedups(ladders, b, best_at[b][1], best_at[b][2])
                row["per_budget"][str(b)] = dict(
                    _speedup_fields(u, f, bnd), baseline_config=best_at[b][0], target=best_at[b][1]
                )
        summary[regime] = _public(configs)
        summary[regime]["_baseline"] = {
            "config": head_config,
            "budget": head_budget,
            "final_accuracy_mean": head_acc,
            "total_flops_mean": head_flops,
        }
    return summary


# Fields of a summary row that depend on the metric compared.
METRIC_FIELDS = (
    "final_accuracy_mean",
    "final_accuracy_std",
    "peak_accuracy_mean",
    "updates_speedup",
    "updates_speedup_std",
    "flops_speedup",
    "flops_speedup_std",
    "seeds_reaching",
    "reached_at_smallest_budget",
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
            if config == "_baseline":
                summary[regime][config] = {m: by_metric[m][regime][config] for m in metrics}
                continue
            merged = {k: v for k, v in row.items() if k not in METRIC_FIELDS}
            for field in METRIC_FIELDS:
                if field in row:
                    merged[field] = {m: by_metric[m][regime][config][field] for m in metrics}
            summary[regime][config] = merged
    return summary


def _speedup_fields(updates, flop_ratios, bounded):
    reached = [u for u in updates if u is not None]
    all_reach = len(reached) == len(updates)
    u_mean, u_std = _mean_std(updates)
    f_mean, f_std = _mean_std(flop_ratios)
    return {
        "updates_speedup": u_mean if all_reach else None,
        "updates_speedup_std": u_std if all_reach else None,
        "flops_speedup": f_mean if all_reach else None,
        "flops_speedup_std": f_std if all_reach else None,
        "seeds_reaching": len(reached),
        "reached_at_smallest_budget": bool(bounded),
    }


def _public(configs):
    return {
        c: {k: v for k, v in row.items() if not k.startswith("_")} for c, row in configs.items()
    }
