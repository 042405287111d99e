"""ActiveCLIP gin configs and a tiny end-to-end command-line run."""

import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
from PIL import Image

from active_keras import main as main_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEW_CONFIGS = [
    ["gin/activeclip.gin"],
    ["gin/activeclip_uniform.gin"],
    ["gin/activeclip_reference.gin"],
    ["gin/activeclip.gin", "gin/activeclip_clean_reference.gin"],
    ["gin/activeclip_reference.gin", "gin/activeclip_clean_reference.gin"],
    ["gin/openclipart.gin"],
]


class TestConfigsParse:
    def setup_method(self):
        gin.clear_config()

    def teardown_method(self):
        gin.clear_config()

    @pytest.mark.parametrize("files", NEW_CONFIGS, ids=lambda f: "+".join(f))
    @pytest.mark.parametrize("local", [False, True])
    def test_parses_and_binds_the_clip_task(self, files, local):
        main_lib.parse_config([os.path.join(ROOT, f) for f in files], [], local=local)
        assert gin.query_parameter("run.task").selector.endswith("ClipTask")
        if "activeclip_clean_reference.gin" in files[-1]:
            assert gin.query_parameter("ClipTask.reference_captions") == "category"

    def test_local_still_shrinks_classact(self):
        main_lib.parse_config([os.path.join(ROOT, "gin/classact.gin")], [], local=True)
        assert gin.query_parameter("ImageClassificationData.train_size") == 2000
        assert gin.query_parameter("run.task").selector.endswith("ClassificationTask")


def _fake_openclipart(root, n=72):
    """Clip-art-like folders: categories, subcategories, noisy file names."""
    rng = np.random.default_rng(0)
    kinds = [("animals/cats", "cat"), ("food/pizza", "pizza"), ("tools", "hammer")]
    for i in range(n):
        folder, word = kinds[i % 3]
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        pixels = rng.integers(0, 255, (10 + i % 5, 12, 4)).astype(np.uint8)
        pixels[..., 3] = 255
        pixels[2:6, 2:6, i % 3] = 0  # A class-dependent mark.
        Image.fromarray(pixels, "RGBA").save(os.path.join(root, folder, f"{word}_nicu_{i}.png"))


@pytest.mark.slow  # About 1 min alone, 2.5 min on a loaded 2-core machine.
def test_tiny_activeclip_cli_run_with_uniform_comparison(tmp_path):
    # Smoke (CI): skip the uniform comparison run, half the time.
    smoke = os.environ.get("ACTIVE_KERAS_SMOKE") == "1"
    data_root = str(tmp_path / "png")
    _fake_openclipart(data_root)
    model_dir = str(tmp_path / "run")
    bindings = [
        f"OpenClipArt.root = '{data_root}'",
        "OpenClipArt.image_size = 16",
        f"OpenClipArt.cache_dir = '{tmp_path / 'cache'}'",
        "OpenClipArt.heldout_fraction = 0.2",
        "OpenClipArt.test_fraction = 0.2",
        "ClipTask.learner_size = 'tiny'",
        "ClipTask.sequence_length = 8",
        "ClipTask.eval_batch_size = 64",
        "run.super_batch_size = 8",
        "run.num_steps = 4",
        "run.eval_every = 2",
        "run.jit_compile = False",
        "train_reference.num_steps = 3",
        "train_reference.batch_size = 8",
        f"run.reference_path = '{tmp_path / 'reference.keras'}'",
    ]
    cmd = [sys.executable, "-m", "active_keras.main", f"--model_dir={model_dir}"]
    cmd += ["--gin_file=gin/activeclip.gin", "--gin_file=gin/activeclip_clean_reference.gin"]
    cmd += [] if smoke else ["--compare_with=gin/activeclip_uniform.gin"]
    cmd += [f"--gin_bindings={b}" for b in bindings]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [(model_dir, "learnability")]
    if not smoke:
        assert "Comparison" in proc.stdout and "zero shot accuracy" in proc.stdout
        runs.append((f"{model_dir}/baseline", "uniform"))
    for run_dir, policy in runs:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        assert metrics["policy"] == policy
        assert [p["step"] for p in metrics["curve"]] == [0, 2, 4]
        point = metrics["curve"][-1]
        for key in (
            "zero_shot_accuracy",
            "image_to_text_recall@1",
            "image_to_text_recall@5",
            "text_to_image_recall@1",
            "text_to_image_recall@5",
            "learner_flops",
            "total_flops",
        ):
            assert key in point
        assert point["learner_flops"] > 0 and metrics["forward_flops_per_example"]["learner"] > 0
        assert os.path.exists(os.path.join(run_dir, "vocab.txt"))  # The run's vocabulary.
    with open(os.path.join(model_dir, "metrics.json")) as f:
        point = json.load(f)["curve"][-1]
    assert point["total_flops"] == sum(
        point[f"{m}_flops"] for m in ("learner", "actor", "reference")
    )
    with open(os.path.join(model_dir, "operative_config.gin")) as f:
        assert "ClipTask.reference_captions = 'category'" in f.read()
    assert os.path.exists(tmp_path / "reference.keras")
