r"""Prints the README's result tables (Markdown) from benchmarks/results/*.json.

Usage:

  python tools/results_table.py benchmarks/results/classact.json
  python tools/results_table.py benchmarks/results/classact.json --thresholds 0.87 0.88 0.89
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


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--thresholds" in args:
        i = args.index("--thresholds")
        print(thresholds_table(args[0], [float(t) for t in args[i + 1 :]]))
    else:
        for p in args:
            print(step_cost_table(p) if p.endswith("step_cost.json") else table(p))
