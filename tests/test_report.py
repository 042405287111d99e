"""The selection log and report: a tiny real CLI run records its selections and renders a page."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import ROOT, TINY, _cli

FIGURES = (
    "accuracy.png",
    "class_selection.png",
    "corrupted.png",
    "score_histograms.png",
    "top_examples.png",
    "bottom_examples.png",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    model_dir = os.path.join(tmp_path, "run")
    proc = _cli(tmp_path, "--gin_file=gin/classact.gin", f"--model_dir={model_dir}", bindings=TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path, model_dir


def _check_png(path):
    assert os.path.getsize(path) > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 50 and image.size[1] > 50


def test_cli_run_logs_selections(tiny_run):
    _, model_dir = tiny_run
    log_dir = os.path.join(model_dir, "selection_log")
    with open(os.path.join(log_dir, "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    # TINY evaluates every 6 of 12 steps; the log follows eval_every.
    assert [r["step"] for r in records] == [6, 12]
    for r in records:
        assert sum(r["class_available"]) == r["examples"] == 4 * 32
        assert sum(r["class_selected"]) == r["selected"] == 4 * 16
        assert all(s <= a for s, a in zip(r["class_selected"], r["class_available"], strict=True))
        assert 0 <= r["corrupted_selected"] <= 1 and 0 < r["corrupted_available"] < 1
        assert sum(r["score_hist"]["all"]) == r["examples"]
        assert sum(r["score_hist"]["selected"]) == r["selected"]
        assert set(r["mean_loss"]) == {"actor", "reference"}
    examples = sorted(f for f in os.listdir(log_dir) if f.endswith(".npz"))
    assert examples == ["step_00000006.npz", "step_00000012.npz"]
    with np.load(os.path.join(log_dir, examples[-1])) as data:
        assert data["top_images"].dtype == np.uint8 and data["top_images"].shape[1:] == (8, 8)
        assert np.all(np.diff(data["top_scores"]) <= 0)  # Highest first.
        assert data["top_scores"].min() >= data["bottom_scores"].max()


def test_cli_run_writes_report_with_valid_figures(tiny_run):
    _, model_dir = tiny_run
    report_dir = os.path.join(model_dir, "report")
    with open(os.path.join(report_dir, "index.html")) as f:
        page = f.read()
    referenced = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(referenced) == sorted(FIGURES)
    for name in FIGURES:
        _check_png(os.path.join(report_dir, name))


def test_report_command_compares_runs(tiny_run):
    tmp_path, model_dir = tiny_run
    # A second run to compare with: another metrics.json (no selection log needed).
    other = os.path.join(tmp_path, "other")
    os.makedirs(other, exist_ok=True)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    metrics["policy"] = "uniform"
    for point in metrics["curve"]:
        point["test_accuracy"] *= 0.9
    with open(os.path.join(other, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    out_dir = os.path.join(tmp_path, "compared")
    cmd = [sys.executable, "-m", "active_keras.report", f"--model_dir={model_dir}"]
    cmd += ["--compare", other, f"--out_dir={out_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out_dir, "index.html")) as f:
        page = f.read()
    assert "other (uniform" in page  # The compared run has a row of its own.
    for name in FIGURES:
        _check_png(os.path.join(out_dir, name))


def test_report_of_a_run_without_selection_log_has_curves_only(tiny_run, tmp_path):
    _, model_dir = tiny_run
    bare = os.path.join(tmp_path, "bare")
    os.makedirs(bare)
    shutil.copy(os.path.join(model_dir, "metrics.json"), bare)
    from active_keras import report

    page = report.write_report(bare)
    with open(page) as f:
        referenced = re.findall(r'<img src="([^"]+)"', f.read())
    assert referenced == ["accuracy.png", "corrupted.png"]  # Corruption from the train metric.
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        report.write_report(str(tmp_path / "missing"))


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="no headless Chromium")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    _, model_dir = tiny_run
    shot = os.path.join(tmp_path, "page.png")
    page = "file://" + os.path.abspath(os.path.join(model_dir, "report", "index.html"))
    cmd = ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    cmd += [f"--screenshot={shot}", "--window-size=1200,3000", page]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_png(shot)
