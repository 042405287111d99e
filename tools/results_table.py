r"""Prints the README's result tables (Markdown) from benchmarks/results/*.json.

Usage:

  python tools/results_table.py benchmarks/results/classact.json
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
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(table(p))
