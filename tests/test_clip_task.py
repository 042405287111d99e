"""ClipTask: the task adapter over Open Clip Art-style folders."""

import numpy as np
import pytest
from PIL import Image

from active_keras.data.openclipart import OpenClipArt
from active_keras.models import clip
from active_keras.tasks.clip_task import ClipTask
from active_keras.text import tokenizer


@pytest.fixture()
def task(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(30):
        category, word = [("animals", "cat"), ("food", "pizza"), ("tools", "hammer")][i % 3]
        folder = tmp_path / "png" / category
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (12, 12, 4)).astype(np.uint8)
        Image.fromarray(pixels, "RGBA").save(folder / f"{word}_{i}.png")
    data = OpenClipArt(root=str(tmp_path / "png"), image_size=16)
    return ClipTask(
        data=data, vocab_dir=str(tmp_path / "run"), sequence_length=8, image_encoder="cnn"
    )


def test_vocab_saved_and_models_checked(task, tmp_path):
    assert (tmp_path / "run" / tokenizer.VOCAB_FILENAME).exists()
    task.check_model(task.build_small("reference"), "reference")
    wrong = clip.build_clip(task.tokenizer.vocab_size, "tiny", 16, 9, image_encoder="cnn")
    with pytest.raises(ValueError, match="inputs"):
        task.check_model(wrong, "reference")


def test_evaluate_keys(task):
    metrics = task.evaluate(task.build_learner())
    assert task.primary_metric in metrics and "image_to_text_recall@5" in metrics
    assert metrics["num_examples"] == len(task.data.examples("test"))
