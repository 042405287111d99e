"""Speedup of a run over a baseline, in learner updates and total FLOPs (METHOD.md).

speedup = (updates the baseline needs to reach its best metric) /
          (updates the run needs to reach that value); likewise for FLOPs.

Example:

```python
from active_keras import speedup
speedup.compare(uniform_curve, classact_curve)["update_speedup"]
```
"""


def first_reaching(curve, target, metric="test_accuracy"):
    """The first point of `curve` whose `metric` is >= `target`, or None."""
    return next((p for p in curve if p[metric] >= target), None)


def compare(baseline, run, metric="test_accuracy"):
    """Compares curve `run` against curve `baseline` at the baseline's best `metric`.

    Returns:
        A dict: `target` (baseline's best), the baseline's and the run's
        updates and total FLOPs to reach it (None if the run never does), the
        two speedups (None if never reached) and both runs' best values.
    """
    best = max(baseline, key=lambda p: p[metric])
    hit = first_reaching(run, best[metric], metric)
    out = {
        "metric": metric,
        "target": best[metric],
        "baseline_updates": best["learner_updates"],
        "baseline_flops": best["total_flops"],
        "updates": hit["learner_updates"] if hit else None,
        "flops": hit["total_flops"] if hit else None,
        "baseline_best": best[metric],
        "run_best": max(p[metric] for p in run),
        "run_final": run[-1][metric],
    }
    out["update_speedup"] = out["baseline_updates"] / out["updates"] if hit else None
    out["flop_speedup"] = out["baseline_flops"] / out["flops"] if hit else None
    return out


def format_table(rows, metric="test_accuracy"):
    """A plain-text table of `{name: compare(...)}` rows."""

    def fmt(v, spec):
        return "never" if v is None else format(v, spec)

    lines = [
        f"{'run':<28} {'best ' + metric:>20} {'updates to target':>18} {'update speedup':>15} "
        f"{'FLOPs to target':>16} {'FLOP speedup':>13}"
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:<28} {r['run_best']:>20.4f} {fmt(r['updates'], 'd'):>18} "
            f"{fmt(r['update_speedup'], '.2f') + ('x' if r['update_speedup'] else ''):>15} "
            f"{fmt(r['flops'] and r['flops'] / 1e12, '.3f') + (' TF' if r['flops'] else ''):>16} "
            f"{fmt(r['flop_speedup'], '.2f') + ('x' if r['flop_speedup'] else ''):>13}"
        )
    return "\n".join(lines)
