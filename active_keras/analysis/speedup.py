"""Speedup of a run over a baseline, in learner updates and total FLOPs (METHOD.md).

speedup = (updates the baseline needs to reach its best metric) /
          (updates the run needs to reach that value); likewise for FLOPs.

Example:

```python
from active_keras.analysis import speedup
speedup.compare(uniform_curve, classact_curve)["update_speedup"]
```
"""


def first_reaching(curve, target, metric="test_accuracy"):
    """The first point of `curve` whose `metric` is >= `target`, or None."""
    return next((p for p in curve if p[metric] >= target), None)


def compare(baseline, run, metric="test_accuracy", extra_flops=0):
    """Compares curve `run` against curve `baseline` at the baseline's best `metric`.

    Edge cases have defined results (flags in the returned dict):

    - `baseline_never_improves`: the baseline's best is its first point; a
      run that is there at its own first point gets speed-up 1.0.
    - `reached_at_first_evaluation`: the run is at the target at its first
      point after step 0, so it may have got there earlier: its speed-ups
      are lower bounds.
    - `reached_at_start`: the run is at the target at step 0 while the
      baseline needed updates: no finite speed-up (None).
    - Curves evaluated at different steps are compared at the points each
      has; the run's first point at or above the target counts, so the
      speed-up is never overstated by the coarser curve.

    Args:
        baseline: Curve points (dicts with `learner_updates`, `total_flops`, `metric`).
        run: The same for the run compared.
        metric: The metric to reach.
        extra_flops: FLOPs the run spent outside its curve (the reference's
            pre-training): `flop_speedup_with_extra` counts them as well.

    Returns:
        A dict: `target` (baseline's best), the baseline's and the run's
        updates and total FLOPs to reach it (None if the run never does), the
        two speedups (None if never reached or not finite), both runs' best
        values and the flags above.
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
        "baseline_never_improves": best is baseline[0],
        "reached_at_first_evaluation": bool(hit) and hit is not run[0] and hit is run[1],
        "reached_at_start": bool(hit) and hit is run[0] and best is not baseline[0],
    }
    out["extra_flops"] = extra_flops
    if hit is None or out["reached_at_start"]:
        out["update_speedup"] = out["flop_speedup"] = out["flop_speedup_with_extra"] = None
    elif hit is run[0]:  # Both at their start: nothing to speed up.
        out["update_speedup"] = out["flop_speedup"] = 1.0
        out["flop_speedup_with_extra"] = 1.0 if not extra_flops else None
    else:
        out["update_speedup"] = out["baseline_updates"] / out["updates"]
        out["flop_speedup"] = out["baseline_flops"] / out["flops"]
        out["flop_speedup_with_extra"] = out["baseline_flops"] / (out["flops"] + extra_flops)
    return out


def format_table(rows, metric="test_accuracy"):
    """A plain-text table of `{name: compare(...)}` rows."""

    def fmt(v, spec):
        return "never" if v is None else format(v, spec)

    lines = [
        f"{'run':<28} {'best ' + metric:>20} {'updates to target':>18} {'update speedup':>15} "
        f"{'FLOPs to target':>16} {'FLOP speedup':>13} {'incl. reference pre-training':>29}"
    ]
    for name, r in rows.items():
        with_extra = r.get("flop_speedup_with_extra")
        lines.append(
            f"{name:<28} {r['run_best']:>20.4f} {fmt(r['updates'], 'd'):>18} "
            f"{fmt(r['update_speedup'], '.2f') + ('x' if r['update_speedup'] else ''):>15} "
            f"{fmt(r['flops'] and r['flops'] / 1e12, '.3f') + (' TF' if r['flops'] else ''):>16} "
            f"{fmt(r['flop_speedup'], '.2f') + ('x' if r['flop_speedup'] else ''):>13} "
            f"{fmt(with_extra, '.2f') + ('x' if with_extra else ''):>29}"
        )
    return "\n".join(lines)
