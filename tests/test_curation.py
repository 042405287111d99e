"""Amortised scoring: curation keeps the top fraction, and its shards read back exactly."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from active_keras import curate
from active_keras.data import curated
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data():
    return ImageClassificationData("digits", heldout_size=300, label_noise=0.2)


@pytest.fixture(scope="module")
def reference():
    keras.utils.set_random_seed(0)  # Untrained weights still give varied, repeatable scores.
    return cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0, name="reference")


@pytest.fixture(scope="module")
def curation(reference, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("curated"))
    manifest = curate.curate(reference, _data(), out, keep_fraction=0.5, examples_per_shard=300)
    return out, manifest


def test_keeps_exactly_the_top_fraction(curation):
    out, manifest = curation
    data = _data()
    split = data.splits["train"]
    scores = np.load(os.path.join(out, "scores.npz"))
    np.testing.assert_array_equal(scores["example_id"], split.ids)
    np.testing.assert_array_equal(scores["label"], split.labels)
    np.testing.assert_array_equal(scores["corrupted"], split.corrupted)
    k = round(0.5 * len(split))
    assert manifest["scored"] == len(split) and manifest["kept"] == k
    names = ["curated-00000-of-00002.tfrecord", "curated-00001-of-00002.tfrecord"]
    assert manifest["shards"] == dict(zip(names, [300, k - 300], strict=True))
    kept = set(curated.load_split(out)[3].tolist())
    top = set(split.ids[np.argsort(-scores["score"], kind="stable")[:k]].tolist())
    assert kept == top
    # Every kept score is at least every dropped one.
    is_kept = np.isin(split.ids, list(kept))
    assert scores["score"][is_kept].min() >= scores["score"][~is_kept].max()
    for png in ("score_histogram.png", "extremes.png"):
        assert os.path.getsize(os.path.join(out, png)) > 1000


def test_ids_and_scores_are_stable_across_runs(curation, reference, tmp_path):
    np.testing.assert_array_equal(_data().splits["train"].ids, _data().splits["train"].ids)
    curate.curate(reference, _data(), str(tmp_path), keep_fraction=0.5, plots=False)
    first = np.load(os.path.join(curation[0], "scores.npz"))
    again = np.load(os.path.join(tmp_path, "scores.npz"))
    for key in ("example_id", "score", "label", "corrupted"):
        np.testing.assert_array_equal(first[key], again[key])


def test_learnability_score_is_actor_minus_reference_loss(reference):
    keras.utils.set_random_seed(1)
    actor = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0, name="actor")
    split = _data().splits["train"]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    got = curate.score_split(split, reference, loss, actor=actor, batch_size=256)
    x = split.images.astype(np.float32) / 255.0
    want = loss.call(split.labels, actor(x)) - loss.call(split.labels, reference(x))
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)


def test_tfrecords_round_trip_images_labels_and_ids(curation):
    out, _ = curation
    split = _data().splits["train"]
    row = {int(i): p for p, i in enumerate(split.ids)}
    seen = 0
    for x, y, meta in curated.curated_dataset(os.path.join(out, "curated-*.tfrecord")).batch(200):
        p = [row[int(i)] for i in meta["example_id"].numpy()]
        np.testing.assert_array_equal(np.round(x.numpy() * 255).astype(np.uint8), split.images[p])
        np.testing.assert_array_equal(y.numpy(), split.labels[p])
        np.testing.assert_array_equal(meta["corrupted"].numpy(), split.corrupted[p])
        seen += len(p)
    assert seen == 550


def test_training_data_reads_the_curated_split(curation):
    out, _ = curation
    data = ImageClassificationData("digits", heldout_size=300, label_noise=0.2, curated_dir=out)
    assert len(data.splits["train"]) == 550 and len(data.splits["test"]) == 397
    x, y, meta = next(iter(data.train_dataset(32)))
    assert x.shape == (32, 8, 8, 1) and set(meta) == {"corrupted", "example_id"}
    assert np.isin(meta["example_id"].numpy(), data.splits["train"].ids).all()


def test_truncated_or_short_shard_is_reported_by_name(curation, tmp_path):
    src, _ = curation
    for name in os.listdir(src):
        if name.endswith(".tfrecord") or name == curated.MANIFEST:
            with open(os.path.join(src, name), "rb") as f, open(tmp_path / name, "wb") as g:
                g.write(f.read())
    shard = tmp_path / "curated-00001-of-00002.tfrecord"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) - 7])  # Cut inside the last record.
    with pytest.raises(
        curated.CorruptShardError, match="curated-00001-of-00002.tfrecord.*truncated"
    ):
        curated.curated_dataset(str(tmp_path))
    # Cut exactly at a record boundary: only the manifest's count can tell.
    first = tmp_path / "curated-00000-of-00002.tfrecord"
    record = next(iter(tf.data.TFRecordDataset(str(first)))).numpy()
    record_bytes = 16 + len(record)  # Length, its CRC, the data, its CRC.
    shard.write_bytes(raw[: len(raw) - record_bytes])
    with pytest.raises(curated.CorruptShardError, match="manifest says 250"):
        curated.verify_shards(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No curated TFRecord shards"):
        curated.curated_dataset(str(tmp_path / "nothing"))


def test_cli_writes_the_outputs(reference, tmp_path):
    ref = str(tmp_path / "reference.keras")
    reference.save(ref)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "active_keras.curate", f"--reference={ref}", "--data=digits"]
    cmd += ["--heldout_size=300", "--label_noise=0.2", "--keep_fraction=0.25", f"--out_dir={out}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kept 275 of 1100 (easy_reference)" in proc.stdout
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["kept"] == 275


def test_cli_rejects_a_bad_keep_fraction(tmp_path, capsys):
    argv = ["--reference=none.keras", "--data=digits", "--heldout_size=300"]
    assert curate.main(argv + ["--keep_fraction=1.5", f"--out_dir={tmp_path}"]) == 1
    assert "keep_fraction must be in (0, 1]" in capsys.readouterr().err
