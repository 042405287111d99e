"""The command line end to end on tiny real data, and its errors."""

import json
import os
import subprocess
import sys

import gin
import pytest

from active_keras import main as main_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Digits (8x8) with small CNNs: a real run of the whole pipeline in seconds.
TINY = [
    "ImageClassificationData.name = 'digits'",
    "ImageClassificationData.heldout_size = 300",
    "ImageClassificationData.label_noise = 0.2",
    "learner/cnn_classifier.widths = (8, 16)",
    "small/cnn_classifier.widths = (4,)",
    "small/cnn_classifier.dense_units = 0",
    "run.super_batch_size = 32",
    "run.num_steps = 12",
    "run.eval_every = 6",
    "run.jit_compile = False",
    "train_reference.num_steps = 10",
    "train_reference.jit_compile = False",
]


def _cli(tmp_path, *args, bindings=TINY):
    ref = os.path.join(tmp_path, "reference.keras")
    cmd = [sys.executable, "-m", "active_keras.main", *args]
    cmd += [f"--gin_bindings={b}" for b in bindings + [f"run.reference_path = '{ref}'"]]
    return subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def test_tiny_classact_run_with_uniform_comparison(tmp_path):
    model_dir = os.path.join(tmp_path, "run")
    proc = _cli(
        tmp_path,
        "--gin_file=gin/classact.gin",
        "--compare_with=gin/uniform.gin",
        f"--model_dir={model_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Comparison" in proc.stdout and "update speedup" in proc.stdout
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    curve = metrics["curve"]
    assert [p["step"] for p in curve] == [0, 6, 12]
    point = curve[-1]
    for key in (
        "learner_updates",
        "examples_drawn",
        "examples_trained",
        "learner_flops",
        "actor_flops",
        "reference_flops",
        "total_flops",
        "test_accuracy",
    ):
        assert key in point
    assert point["examples_drawn"] == 12 * 32 and point["examples_trained"] == 12 * 16
    assert point["total_flops"] == sum(
        point[f"{m}_flops"] for m in ("learner", "actor", "reference")
    )
    assert 0 <= point["train_selected_corrupted"] <= 1
    assert metrics["policy"] == "learnability"
    with open(os.path.join(model_dir, "operative_config.gin")) as f:
        assert "run.policy = 'learnability'" in f.read()
    assert os.listdir(os.path.join(model_dir, "tb"))
    assert os.path.exists(os.path.join(model_dir, "learner.keras"))
    assert os.path.exists(os.path.join(tmp_path, "reference.keras"))  # Its own file.
    with open(os.path.join(model_dir, "baseline", "metrics.json")) as f:
        baseline = json.load(f)
    assert baseline["policy"] == "uniform" and "actor_flops" not in baseline["curve"][-1]


def test_bad_gin_binding_is_named(tmp_path):
    proc = _cli(
        tmp_path,
        "--gin_file=gin/classact.gin",
        f"--model_dir={tmp_path}/x",
        bindings=["run.num_stepz = 3"],
    )
    assert proc.returncode == 1
    assert "Bad gin binding 'run.num_stepz = 3'" in proc.stderr


def test_in_process_errors(tmp_path):
    gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
    with pytest.raises(main_lib.ConfigError, match="Gin file 'nope.gin' does not exist"):
        main_lib.parse_config(["nope.gin"], [])
    with pytest.raises(main_lib.ConfigError, match="Bad gin binding 'NoSuchThing.x = 1'"):
        main_lib.parse_config(gin_files, ["NoSuchThing.x = 1"])
    locked = os.path.join(tmp_path, "locked")
    os.makedirs(locked)
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file.
            locked = os.path.join(gin_files[0], "sub")
        with pytest.raises(PermissionError, match="model_dir .* is not writable"):
            main_lib.run_config(gin_files, TINY, os.path.join(locked, "run"))
    finally:
        gin.clear_config()
        os.chmod(os.path.join(tmp_path, "locked"), 0o700)


def test_missing_data_package_error_says_how_to_install(tmp_path):
    gin_files = [os.path.join(ROOT, "gin", "classact.gin")]
    bindings = [f"ImageClassificationData.data_dir = '{tmp_path}/none'"]
    try:
        with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
            main_lib.run_config(gin_files, bindings, os.path.join(tmp_path, "run"))
    finally:
        gin.clear_config()


def test_nan_loss_stops_the_cli_naming_the_step(tmp_path):
    proc = _cli(
        tmp_path,
        "--gin_file=gin/uniform.gin",
        f"--model_dir={tmp_path}/nan",
        bindings=TINY + ["make_optimizer.learning_rate = 1e12", "make_optimizer.name = 'sgd'"],
    )
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "error: The loss is" in proc.stderr and "at step" in proc.stderr
