"""ActiveCLIP gin configs and a tiny end-to-end command-line run."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json
import pathlib
import subprocess

import gin
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized
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


def _case_name(files, local):
    """A test-name-safe id: `activeclip_gin_activeclip_clean_reference_gin_local`."""
    name = "_".join(os.path.basename(f).replace(".", "_") for f in files)
    return name + ("_local" if local else "")


class ConfigsParseTest(parameterized.TestCase, tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()

    def tearDown(self):
        gin.clear_config()
        super().tearDown()

    @parameterized.named_parameters(
        (_case_name(files, local), files, local) for files in NEW_CONFIGS for local in (False, True)
    )
    def test_parses_and_binds_the_clip_task(self, files, local):
        main_lib.parse_config([os.path.join(ROOT, f) for f in files], [], local=local)
        self.assertTrue(gin.query_parameter("run.task").selector.endswith("ClipTask"))
        if "activeclip_clean_reference.gin" in files[-1]:
            self.assertEqual(gin.query_parameter("ClipTask.reference_captions"), "category")

    def test_local_still_shrinks_classact(self):
        main_lib.parse_config([os.path.join(ROOT, "gin/classact.gin")], [], local=True)
        self.assertEqual(gin.query_parameter("ImageClassificationData.train_size"), 2000)
        self.assertTrue(gin.query_parameter("run.task").selector.endswith("ClassificationTask"))


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


class ActiveClipCliTest(tf.test.TestCase):
    @pytest.mark.slow  # About 1 min alone, 2.5 min on a loaded 2-core machine.
    def test_tiny_activeclip_cli_run_with_uniform_comparison(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        # Smoke (CI): skip the uniform comparison run, half the time.
        smoke = os.environ.get("ACTIVE_KERAS_SMOKE") == "1"
        data_root = str(tmp_dir / "png")
        _fake_openclipart(data_root)
        model_dir = str(tmp_dir / "run")
        bindings = [
            f"OpenClipArt.root = '{data_root}'",
            "OpenClipArt.image_size = 16",
            f"OpenClipArt.cache_dir = '{tmp_dir / 'cache'}'",
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
            f"run.reference_path = '{tmp_dir / 'reference.keras'}'",
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
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        runs = [(model_dir, "learnability")]
        if not smoke:
            self.assertIn("Comparison", proc.stdout)
            self.assertIn("best image to text recall@5", proc.stdout)
            runs.append((f"{model_dir}/baseline", "uniform"))
        for run_dir, policy in runs:
            with open(os.path.join(run_dir, "metrics.json")) as f:
                metrics = json.load(f)
            self.assertEqual(metrics["policy"], policy)
            self.assertEqual([p["step"] for p in metrics["curve"]], [0, 2, 4])
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
                self.assertIn(key, point)
            self.assertGreater(point["learner_flops"], 0)
            self.assertGreater(metrics["forward_flops_per_example"]["learner"], 0)
            # The run's vocabulary.
            self.assertTrue(os.path.exists(os.path.join(run_dir, "vocab.txt")))
        with open(os.path.join(model_dir, "metrics.json")) as f:
            point = json.load(f)["curve"][-1]
        self.assertEqual(
            point["total_flops"],
            sum(point[f"{m}_flops"] for m in ("learner", "actor", "reference")),
        )
        with open(os.path.join(model_dir, "operative_config.gin")) as f:
            self.assertIn("ClipTask.reference_captions = 'category'", f.read())
        self.assertTrue(os.path.exists(tmp_dir / "reference.keras"))


if __name__ == "__main__":
    tf.test.main()
