r"""Selection report: an HTML page of figures about a run and what it selected.

`python -m active_keras.analysis.report --model_dir=DIR [--compare DIR2 ...]` writes
`DIR/report/index.html` and its PNG figures (matplotlib, Agg backend):

- test accuracy (the task's primary metric) against learner updates and
  against total training FLOPs, for `DIR` and every compared run (read from
  their `metrics.json`), from the first evaluation after step 0; runs of the
  same configuration that differ only in their seeds are drawn as their mean
  with a band from the lowest to the highest (`draw_curves`);
- the selection rate of each class over training;
- the fraction of corrupted labels among the selected examples over training
  (the logged super-batches, and every run's own training-step metric);
- histograms of the scores of all and of the selected examples;
- image grids of the highest- and lowest-scored examples of the last logged
  super-batch (with captions for image-text tasks).

The last four come from `DIR/selection_log/`, which `SelectionLogger`
(`active_keras.analysis.selection_log`) records during training; a run without that log
gets the curve figures only. The CLI writes the report at the end of each run.

Example:

  python -m active_keras.analysis.report --model_dir=runs/classact \
      --compare runs/classact/baseline
"""

import html
import json
import os
import re
import sys
import textwrap

import numpy as np

from active_keras import files, quiet
from active_keras.tasks import base

REPORT_DIR = "report"
# Gin bindings that only change a run's randomness (`run.seed = 1`, ...).
_SEED_BINDING = re.compile(r"^\s*[\w./]*seed\s*=.*$", re.M)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_run(model_dir):
    """A run's facts, curve, selection records and newest examples.

    Raises:
        FileNotFoundError: If `model_dir` has no `metrics.json`.
    """
    path = os.path.join(model_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: is {model_dir!r} a run directory?")
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e}): is the run complete?") from None
    from active_keras.analysis import selection_log  # Imports TensorFlow: only when a run is read.

    log_dir = os.path.join(model_dir, "selection_log")
    config_path = os.path.join(model_dir, "operative_config.gin")
    config = ""
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = f.read()
    return {
        "dir": model_dir,
        "name": _run_name(model_dir, data),
        "facts": {k: v for k, v in data.items() if k != "curve"},
        "config": config,
        "curve": data.get("curve", []),
        "records": selection_log.read_records(log_dir),
        "examples": selection_log.read_examples(log_dir),
    }


def _run_name(model_dir, data):
    folder = os.path.basename(os.path.normpath(model_dir))
    policy = data.get("policy")
    if policy and policy not in folder:
        return f"{folder} ({policy}, {data.get('selection', '')})"
    return folder


def pick_metric(curve):
    """The accuracy a curve reports: the first of the tasks' primary metrics present."""
    name = base.primary_metric(curve[-1]) if curve else None
    if name:
        return name
    candidates = [k for k in (curve[-1] if curve else {}) if k.endswith("accuracy")]
    return candidates[0] if candidates else None


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    _plt().close(fig)
    return name


def trained_points(curve, metric, key):
    """The points of `curve` to plot against `key`: the evaluations after step 0.

    The step-0 point is the untrained model; drawn, it is a vertical line
    from chance level up to the first evaluation.
    """
    return [p for p in curve if p.get("step", 0) > 0 and metric in p and key in p]


def spread(curves, metric, key):
    """Mean, lowest and highest `metric` over several runs' curves.

    Taken at the steps every curve evaluated (after step 0); x is the mean of
    `key` there (for `total_flops`, runs of one configuration agree).

    Returns:
        A dict of lists `x`, `mean`, `low`, `high` (one value a common step), or
        None if the curves share no evaluated step.
    """
    by_step = [{p["step"]: p for p in trained_points(c, metric, key)} for c in curves]
    steps = sorted(set.intersection(*(set(points) for points in by_step)))
    if not steps:
        return None
    values = np.array([[points[s][metric] for s in steps] for points in by_step], float)
    x = np.array([[points[s][key] for s in steps] for points in by_step], float).mean(0)
    return {
        "x": x.tolist(),
        "mean": values.mean(0).tolist(),
        "low": values.min(0).tolist(),
        "high": values.max(0).tolist(),
    }


def draw_curves(ax, curves, metric, key, label, **style):
    """Draws one configuration's curves of `metric` against `key` on `ax`.

    One curve is drawn as it is; several (the same configuration over seeds)
    as their mean with a band from the lowest to the highest value. Both start
    at the first evaluation after step 0.

    Returns:
        The plotted `metric` values (for the axis limits).
    """
    band = spread(curves, metric, key) if len(curves) > 1 else None
    if band:
        (line,) = ax.plot(
            band["x"], band["mean"], label=f"{label} (mean of {len(curves)} seeds)", **style
        )
        ax.fill_between(band["x"], band["low"], band["high"], color=line.get_color(), alpha=0.2)
        return band["low"] + band["high"]
    plotted = []
    for i, curve in enumerate(curves):
        points = trained_points(curve, metric, key)
        values = [p[metric] for p in points]
        ax.plot([p[key] for p in points], values, label=label if i == 0 else None, **style)
        plotted += values
    return plotted


def group_by_config(runs):
    """`runs` grouped by configuration: runs that differ only in their seeds share a group.

    The configuration is a run's facts (metrics.json) and operative gin config,
    without the seed bindings. Groups keep the order of their first run.
    """
    groups = {}
    for run in runs:
        facts = {k: v for k, v in run["facts"].items() if k != "seed"}
        config = _SEED_BINDING.sub("", run.get("config", ""))
        key = json.dumps(facts, sort_keys=True, default=str) + config
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def plot_curves(runs, metric, out_dir):
    """Accuracy against learner updates and against total FLOPs, every run (or seed group)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    axes_keys = (("learner_updates", "learner updates"), ("total_flops", "total training FLOPs"))
    groups = group_by_config(runs)
    for ax, (key, label) in zip(axes, axes_keys, strict=True):
        plotted = []
        for i, group in enumerate(groups):
            plotted += draw_curves(
                ax,
                [run["curve"] for run in group],
                metric,
                key,
                group[0]["name"],
                ls="-" if i == 0 else "--",
                marker="o",
                ms=3,
                lw=2.0 if i == 0 else 1.2,
            )
        if plotted:
            ax.set_ylim(max(min(plotted) - 0.02, 0.0), max(plotted) + 0.01)
        ax.set_xlabel(label)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{metric.replace('_', ' ')} vs {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, out_dir, "accuracy.png")


def _class_names(run, num_classes):
    names = run["examples"].get("class_names") if run["examples"] else None
    if names is not None and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def plot_class_rates(run, out_dir):
    """Selected / available of each class at each record (1.0 = selected as often as uniform)."""
    plt = _plt()
    records = run["records"]
    steps = [r["step"] for r in records]
    num_classes = max(len(r["class_available"]) for r in records)

    def counts(key):
        return np.array([np.pad(r[key], (0, num_classes - len(r[key]))) for r in records], float)

    available, chosen = counts("class_available"), counts("class_selected")
    keep = np.array([r["selected"] / r["examples"] for r in records])
    rate = chosen / np.maximum(available, 1) / keep[:, None]
    names = _class_names(run, num_classes)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    cmap = plt.get_cmap("tab20" if num_classes > 10 else "tab10")
    for c in range(num_classes):
        ax.plot(steps, rate[:, c], "-o", ms=3, color=cmap(c % cmap.N), label=names[c][:20])
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("learner updates")
    ax.set_ylabel("selection rate / keep fraction")
    ax.set_title("Selection rate per class (1 = uniform)")
    ax.grid(alpha=0.3)
    if num_classes <= 20:
        ax.legend(fontsize=7, ncol=2, loc="best")
    return _save(fig, out_dir, "class_selection.png")


def plot_corrupted(runs, out_dir):
    """Fraction of corrupted labels selected over training; None if nothing marks corruption."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    drawn = False
    main = runs[0]
    records = [r for r in main["records"] if "corrupted_selected" in r]
    if records:
        steps = [r["step"] for r in records]
        selected = [r["corrupted_selected"] for r in records]
        available = [r["corrupted_available"] for r in records]
        ax.plot(steps, selected, "-o", lw=2, ms=3, label=f"{main['name']}: selected (logged)")
        ax.plot(steps, available, ":", color="grey", label="available (logged)")
        drawn = True
    for run in runs:
        points = [p for p in run["curve"] if "train_selected_corrupted" in p]
        if points:
            steps = [p["step"] for p in points]
            values = [p["train_selected_corrupted"] for p in points]
            ax.plot(steps, values, "--", lw=1.2, label=f"{run['name']}: training steps")
            drawn = True
    if not drawn:
        _plt().close(fig)
        return None
    ax.set_xlabel("learner updates")
    ax.set_ylabel("fraction of corrupted labels")
    ax.set_ylim(0, None)
    ax.set_title("Corrupted labels among the selected examples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "corrupted.png")


def plot_score_histograms(run, out_dir):
    """Score histograms (all vs selected) at the first, middle and last record."""
    plt = _plt()
    records = run["records"]
    picks = sorted({0, len(records) // 2, len(records) - 1})
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.4), squeeze=False)
    for ax, i in zip(axes[0], picks, strict=True):
        hist = records[i]["score_hist"]
        edges = np.asarray(hist["edges"])
        widths = np.diff(edges)
        ax.bar(edges[:-1], hist["all"], widths, align="edge", alpha=0.45, label="all")
        ax.bar(edges[:-1], hist["selected"], widths, align="edge", alpha=0.8, label="selected")
        ax.set_title(f"step {records[i]['step']}")
        ax.set_xlabel("score")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("examples")
    axes[0][0].legend(fontsize=8)
    return _save(fig, out_dir, "score_histograms.png")


def plot_examples(run, which, out_dir):
    """A grid of the `which` ("top" or "bottom") scored examples of the last logged super-batch."""
    plt = _plt()
    ex = run["examples"]
    images = ex[f"{which}_images"]
    n = len(images)
    captions = ex.get(f"{which}_captions")
    cols = min(8, n)
    rows = int(np.ceil(n / cols))
    height = 2.3 if captions is not None else 1.8
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, height * rows), squeeze=False)
    names = _class_names(run, int(ex.get("class_names", np.zeros(0)).size) or 0)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray" if images[i].ndim == 2 else None, vmin=0, vmax=255)
        label = int(ex[f"{which}_labels"][i])
        name = names[label][:12] if label < len(names) else str(label)
        lines = [f"{ex[f'{which}_scores'][i]:+.2f}  y={name}"]
        flags = []
        if ex[f"{which}_selected"][i]:
            flags.append("selected")
        if f"{which}_corrupted" in ex and ex[f"{which}_corrupted"][i]:
            flags.append("NOISY")
        if flags:
            lines.append(" ".join(flags))
        if captions is not None:
            lines += textwrap.wrap(str(captions[i]), 22)[:2]
        color = "crimson" if "NOISY" in flags else "black"
        ax.set_title("\n".join(lines), fontsize=6.5, color=color)
    title = "Highest" if which == "top" else "Lowest"
    fig.suptitle(f"{title}-scored examples of a super-batch at step {int(ex['step'])}", fontsize=10)
    return _save(fig, out_dir, f"{which}_examples.png")


def _summary_rows(runs, metric):
    rows = []
    for run in runs:
        facts, curve = run["facts"], run["curve"]
        values = [p[metric] for p in curve if metric in p]
        best = max(values) if values else float("nan")
        best_step = next((p["step"] for p in curve if p.get(metric) == best), None)
        rows.append(
            [
                run["name"],
                facts.get("policy", ""),
                facts.get("selection", ""),
                f"{facts.get('super_batch_size', '')} / {facts.get('sub_batch_size', '')}",
                f"{facts.get('predicted_step_cost_vs_uniform', float('nan')):.3f}",
                f"{best:.4f} (step {best_step})",
                f"{values[-1]:.4f}" if values else "",
                f"{curve[-1].get('total_flops', 0) / 1e12:.3f}" if curve else "",
            ]
        )
    return rows


_FIGURE_TEXT = {
    "accuracy.png": "Test accuracy against learner updates (left) and against total training "
    "FLOPs including scoring and the small models (right), from the first evaluation. Runs "
    "of one configuration with different seeds: their mean, shaded from lowest to highest.",
    "class_selection.png": "How often each class is selected, relative to a uniform draw "
    "(1.0), on the logged super-batches.",
    "corrupted.png": "Fraction of corrupted (noisy) labels among the selected examples: "
    "solid from the logged super-batches, dashed from the training steps; grey dotted: the "
    "fraction among all drawn examples.",
    "score_histograms.png": "Scores of all examples of the logged super-batches and of those "
    "selected, early, midway and at the end of training.",
    "top_examples.png": "The highest-scored examples of the last logged super-batch (score, "
    "label; NOISY marks a corrupted label).",
    "bottom_examples.png": "The lowest-scored examples of the same super-batch.",
}


def write_html(out_dir, runs, metric, figures):
    """Writes `index.html` referencing `figures` (file names in `out_dir`)."""
    head = ["run", "policy", "selection", "B / b", "predicted step cost"]
    head += [f"best {metric}", "final", "total TFLOPs"]
    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>\n"
    for row in _summary_rows(runs, metric):
        table += "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>\n"
    body = []
    for name in figures:
        text = html.escape(_FIGURE_TEXT.get(name, ""))
        body.append(
            f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    missing = (
        ""
        if runs[0]["records"]
        else (
            "<p><em>No selection log in this run (selection_log/ is empty): only the curves are "
            "shown.</em></p>"
        )
    )
    dirs = ", ".join(f"<code>{html.escape(r['dir'])}</code>" for r in runs)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Selection report: {html.escape(runs[0]["name"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #444; font-size: 0.9em; }}
</style></head><body>
<h1>Selection report: {html.escape(runs[0]["name"])}</h1>
<p>Runs: {dirs}</p>
<table>
{table}</table>
{missing}
{"".join(body)}
</body></html>
"""
    path = os.path.join(out_dir, "index.html")
    with files.atomic_file(path) as f:
        f.write(page)
    return path


def write_report(model_dir, compare=(), out_dir=None, metric=None):
    """Renders the report of `model_dir` (compared with the runs in `compare`).

    Args:
        model_dir: The run: `metrics.json`, and `selection_log/` when recorded.
        compare: Other run directories whose curves are drawn beside it.
        out_dir: Where the page goes; default `model_dir/report`.
        metric: Accuracy to plot; default the task's (test or zero-shot accuracy).

    Returns:
        The path of `index.html`.
    """
    runs = [load_run(model_dir)] + [load_run(d) for d in compare]
    out_dir = out_dir or os.path.join(model_dir, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    metric = metric or pick_metric(runs[0]["curve"])
    figures = []
    if metric:
        figures.append(plot_curves(runs, metric, out_dir))
    main = runs[0]
    if main["records"]:
        figures.append(plot_class_rates(main, out_dir))
    corrupted = plot_corrupted(runs, out_dir)
    if corrupted:
        figures.append(corrupted)
    if main["records"]:
        figures.append(plot_score_histograms(main, out_dir))
    if main["examples"] is not None:
        figures += [plot_examples(main, "top", out_dir), plot_examples(main, "bottom", out_dir)]
    return write_html(out_dir, runs, metric or "", figures)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Render a run's selection report (HTML).")
    parser.add_argument("--model_dir", required=True, help="The run directory.")
    parser.add_argument("--compare", nargs="*", default=[], help="Run directories to compare.")
    parser.add_argument("--out_dir", default=None, help="Default: MODEL_DIR/report.")
    parser.add_argument("--metric", default=None, help="Default: the task's accuracy.")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.model_dir, args.compare, args.out_dir, args.metric)
    except (ValueError, KeyError, OSError) as e:  # A missing or damaged run file, named.
        print(quiet.error_line(e), file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    quiet.start(verbose=quiet.verbose_requested())
    sys.exit(main())
