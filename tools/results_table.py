r"""Prints the result tables of README.md and docs/results/ from benchmarks/results/*.json.

Usage:

  python tools/results_table.py benchmarks/results/classact.json   # every ladder row
  python tools/results_table.py benchmarks/results/classact.json --matched  # the headline
  python tools/results_table.py benchmarks/results/classact.json --update_readme README.md
  python tools/results_table.py benchmarks/results/classact.json \
      --update_readme docs/results/classact.md
  python tools/results_table.py benchmarks/results/classact_constant_lr.json
  python tools/results_table.py benchmarks/results/classact_constant_lr.json --thresholds 0.87 0.88
"""

import json
import sys


def _fmt(value, spec, suffix=""):
    return "not reached" if value is None else format(value, spec) + suffix


def table(path):
    with open(path) as f:
        results = json.load(f)
    metric = None
    lines = []
    for group, res in results["groups"].items():
        rows = res["runs"]
        metric = next(iter(rows.values()))["metric"]
        base = rows[res["baseline"]]
        lines += [
            f"**{group}** — target: the tuned uniform baseline's best {metric} "
            f"({base['target']:.4f} after {base['baseline_updates']} updates)",
            "",
            f"| run | best {metric} | updates to target | update speedup | "
            "total FLOPs to target | FLOP speedup | predicted step cost vs uniform | "
            "corrupted labels selected (last interval) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows.values():
            corrupted = r.get("final_selected_corrupted")
            lines.append(
                f"| {r['label']} | {r['run_best']:.4f} | {_fmt(r['updates'], 'd')} | "
                f"{_fmt(r['update_speedup'], '.2f', 'x')} | "
                f"{_fmt(r['flops'] and r['flops'] / 1e12, '.2f', ' TFLOP')} | "
                f"{_fmt(r['flop_speedup'], '.2f', 'x')} | "
                f"{r['predicted_step_cost_vs_uniform']:.2f}x | "
                f"{'-' if corrupted is None else format(corrupted, '.3f')} |"
            )
        lines.append("")
        for other in next(iter(rows.values())).get("also", {}):
            lines += [
                f"Against the best uniform {other}:",
                "",
                f"| run | best {other} | updates to target | update speedup | FLOP speedup |",
                "|---|---|---|---|---|",
            ]
            for r in rows.values():
                a = r["also"][other]
                lines.append(
                    f"| {r['label']} | {a['run_best']:.4f} | {_fmt(a['updates'], 'd')} | "
                    f"{_fmt(a['update_speedup'], '.2f', 'x')} | "
                    f"{_fmt(a['flop_speedup'], '.2f', 'x')} |"
                )
            lines.append("")
    return "\n".join(lines)


def _pm(mean, std, spec, suffix=""):
    if mean is None:
        return "not reached"
    return f"{format(mean, spec)}{suffix} ± {format(std or 0.0, spec)}"


def _verdict(row):
    if row["is_baseline"]:
        return "baseline"
    speedup = row["flops_speedup_incl_pretraining"]  # The headline counts pre-training.
    if speedup is None:
        return "does not reach the best uniform"
    lower = speedup - (row["flops_speedup_incl_pretraining_std"] or 0.0)
    bound = " (lower bound)" if row["reached_at_smallest_budget"] else ""
    if lower > 1.0:
        return "compute-positive" + bound
    if speedup > 1.0:
        return "compute-positive within the seed spread only" + bound
    return "compute-negative" + bound


def _for_metric(row, metric):
    """`row` with every metric-keyed field (ActiveCLIP's summary) narrowed to `metric`."""
    if metric is None:
        return row
    return {k: v[metric] if isinstance(v, dict) and metric in v else v for k, v in row.items()}


def _metrics(results):
    """The metric names of a metric-keyed summary (in the suite's order), else `[None]`."""
    for rows in results["summary"].values():
        for name, row in rows.items():
            if not name.startswith("_") and isinstance(row["final_accuracy_mean"], dict):
                return list(row["final_accuracy_mean"])
    return [None]


def ladder_table(path, metrics=None):
    """ "When does selection pay?": the budget-ladder summary (mean ± std over seeds).

    A summary keyed by metric (ActiveCLIP's) gives one table per metric in
    `metrics` (default: all).
    """
    with open(path) as f:
        results = json.load(f)
    lines = []
    for metric in metrics or _metrics(results):
        if metric is not None:
            lines += [f"**{metric}**", ""]
        lines += [
            f"| regime | run | keep | seeds | final {'value' if metric else 'accuracy'} per budget "
            "(mean ± std) | peak | "
            "updates speed-up | FLOP speed-up (pre-training incl.) | FLOP speed-up "
            "(reused reference) | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for regime, rows in results["summary"].items():
            for name, row in rows.items():
                if name.startswith("_"):
                    continue
                row = _for_metric(row, metric)
                runs = row.get("runs_per_budget") or [row["seeds"]] * len(row["budgets"])
                per_budget = ", ".join(
                    # One run has no spread to show: say so rather than print "± 0".
                    f"{b}: {m:.4f} ± {sd:.4f}" if n > 1 else f"{b}: {m:.4f} (1 seed)"
                    for b, m, sd, n in zip(
                        row["budgets"],
                        row["final_accuracy_mean"],
                        row["final_accuracy_std"],
                        runs,
                        strict=True,
                    )
                )
                if row["is_baseline"]:
                    # A uniform row against the best uniform mean is no speed-up (noisy seeds
                    # of the best configuration "reach" its own mean early or never).
                    speedups = "— | — | —"
                else:
                    speedups = " | ".join(
                        _pm(row.get(key), row.get(f"{key}_std"), ".2f", "x") for key in SPEEDUPS
                    )
                lines.append(
                    f"| {regime} | {name} | {row['keep_fraction']:g} | {row['seeds']} | "
                    f"{per_budget} | {row['peak_accuracy_mean']:.4f} | {speedups} "
                    f"| {_verdict(row) if 'flops_speedup' in row else '-'} |"
                )
        lines.append("")
        for regime, rows in results["summary"].items():
            bases = rows.get("_baselines") or {}
            if metric is not None and bases:
                bases = bases[metric]  # Keyed by metric first.
            for base in bases.values():
                lines.append(
                    f"- {regime}: best uniform on {base['train_data']} = {base['config']} at "
                    f"{base['budget']} updates, final {metric or 'accuracy'} "
                    f"{base['final_accuracy_mean']:.4f} (test, mean over seeds; picked on "
                    f"{base['picked_on']})."
                )
        lines.append("")
    done, missing = len(results["runs"]), len(results["not_run"])
    lines.append(f"- Runs in this summary: {done} of {done + missing}.")
    return "\n".join(lines)


# The speed-ups of a row: in updates, in compute with the reference's pre-training, and in compute
# for a reference that is reused (its pre-training amortised away).
SPEEDUPS = ("updates_speedup", "flops_speedup_incl_pretraining", "flops_speedup")


def _seeds(row):
    return f"{row['seeds_reaching']} of {row['seeds']}"


def matched_table(path):
    """ "When does selection pay?": one row per (regime, reference data), against matched uniform.

    Each row is the arm's configuration picked on the regime's `_picked_on`
    split, compared with uniform trained on every labelled example its
    reference saw (that baseline's pick on the same split); the figures are
    read on test. Only regimes picked on validation are listed.
    """
    with open(path) as f:
        summary = json.load(f)["summary"]
    lines = [
        "| regime | reference saw | matched uniform baseline (data, config, budget: test "
        "accuracy) | selection (picked) | updates speed-up | compute speed-up, pre-training "
        "incl. | compute, reused reference | seeds reaching |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for regime, rows in summary.items():
        if rows.get("_picked_on") != "validation":
            continue
        for config in rows["_picks"].values():
            row = rows[config]
            base = rows["_baselines"][row["baseline"]]
            edge = " (largest budget)" if base["at_largest_budget"] else ""
            cells = [_pm(row[k], row[f"{k}_std"], ".2f", "x") for k in SPEEDUPS]
            lines.append(
                f"| {regime} | {row['reference_data']} | {base['train_data']}, {base['config']}, "
                f"{base['budget']}{edge}: {base['final_accuracy_mean']:.4f} | {config} | "
                + " | ".join(cells)
                + f" | {_seeds(row)} |"
            )
    lines += [
        "",
        "Mean ± sample std (ddof = 1) over seeds; a speed-up is given only when every seed "
        'reaches the target (else "not reached").',
    ]
    return "\n".join(lines)


def step_cost_table(path):
    """The step-cost benchmark: measured vs FLOP-predicted cost of each variant."""
    with open(path) as f:
        results = json.load(f)
    load = results["machine"]
    lines = [
        f"Load average during the run: {load['load_average_at_start'][0]:.1f} at the start, "
        f"{load['load_average_at_end'][0]:.1f} at the end (2 cores).",
        "",
        "| learner / actor FLOPs | variant | step cost vs plain fit() | throughput vs plain | "
        "FLOP-predicted cost | measured / predicted |",
        "|---|---|---|---|---|---|",
    ]
    for pair in results["pairs"].values():
        ratio = f"{pair['learner_over_actor_flops']:.0f}x"
        for name, v in pair["variants"].items():
            if name.startswith("part:") or name == "plain":
                continue
            lines.append(
                f"| {ratio} | {name} (B={v['super_batch_size']}) | "
                f"{v['measured_step_cost_vs_plain']:.3f} | {v['throughput_vs_plain']:.3f} | "
                f"{v['predicted_step_cost_vs_uniform']:.3f} | {v['measured_over_predicted']:.3f} |"
            )
    lines += [
        "",
        "Precomputed reference losses against computing them every step (per-round ratios of "
        "interleaved timing windows):",
        "",
        "| learner / actor FLOPs | B | precomputed / computed step time: median (range) | "
        "FLOP-predicted | noise wider than the predicted saving? |",
        "|---|---|---|---|---|",
    ]
    for pair in results["pairs"].values():
        ratio = f"{pair['learner_over_actor_flops']:.0f}x"
        for v in pair.get("precomputed_vs_computed", {}).values():
            lines.append(
                f"| {ratio} | {v['super_batch_size']} | {v['measured_median']:.3f} "
                f"({v['measured_min']:.3f}-{v['measured_max']:.3f}) | {v['predicted']:.3f} | "
                f"{'yes' if v['noise_exceeds_predicted_saving'] else 'no'} |"
            )
    return "\n".join(lines)


def thresholds_table(path, thresholds):
    """Updates each run needs to first reach each fixed value of the metric."""
    with open(path) as f:
        results = json.load(f)
    lines = []
    for group, res in results["groups"].items():
        metric = next(iter(res["runs"].values()))["metric"]
        lines += [
            f"**{group}**: learner updates to first reach a {metric} of",
            "",
            "| run | " + " | ".join(f"{t:g}" for t in thresholds) + " |",
            "|---|" + "---|" * len(thresholds),
        ]
        for name, curve in res["curves"].items():
            steps = [
                next((p["learner_updates"] for p in curve if p[metric] >= t), None)
                for t in thresholds
            ]
            cells = " | ".join("-" if s is None else str(s) for s in steps)
            lines.append(f"| {res['runs'][name]['label']} | {cells} |")
        lines.append("")
    return "\n".join(lines)


# The README's headline metrics of a metric-keyed summary (ActiveCLIP); the JSON has all.
README_METRICS = ("image_to_text_recall@5", "text_to_image_recall@5", "zero_shot_accuracy")


def update_readme(path, readme):
    """Rewrites the result blocks of `readme` (a Markdown file) from the results file `path`.

    The blocks are the lines between `<!-- SUITE-summary -->` (every ladder row) or
    `<!-- SUITE-matched -->` (the matched-baseline table) and their closing markers, where
    SUITE is the results file's `suite` (classact, activeclip); the file must have one.
    """
    with open(path) as f:
        results = json.load(f)
    suite = results["suite"]
    with open(readme) as f:
        text = f.read()
    metrics = None if _metrics(results) == [None] else README_METRICS
    blocks = {
        f"{suite}-summary": lambda: ladder_table(path, metrics),
        f"{suite}-matched": lambda: matched_table(path),
    }
    found = [name for name in blocks if f"<!-- {name} -->" in text]
    if not found:
        raise ValueError(f"{readme} has no <!-- {suite}-summary --> or -matched --> block.")
    for name in found:
        text = _replace_block(text, name, blocks[name]())
    with open(readme, "w") as f:
        f.write(text)


def _replace_block(text, name, body):
    """`text` with the lines between `<!-- name -->` and `<!-- /name -->` replaced by `body`."""
    head, rest = text.split(f"<!-- {name} -->", 1)
    _, tail = rest.split(f"<!-- /{name} -->", 1)
    return f"{head}<!-- {name} -->\n{body}\n<!-- /{name} -->{tail}"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--update_readme" in args:
        update_readme(args[0], args[args.index("--update_readme") + 1])
    elif "--matched" in args:
        print(matched_table(args[0]))
    elif "--thresholds" in args:
        i = args.index("--thresholds")
        print(thresholds_table(args[0], [float(t) for t in args[i + 1 :]]))
    else:
        for p in args:
            if p.endswith("step_cost.json"):
                print(step_cost_table(p))
            else:
                with open(p) as f:
                    print(ladder_table(p) if "summary" in json.load(f) else table(p))
