"""Amortised scoring: curation keeps the top fraction, and its shards read back exactly."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib
import io
import json
import pathlib
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from active_keras.curation import curate
from active_keras.data import curated
from active_keras.data.classification import ImageClassificationData
from active_keras.models import cnn


def _data():
    return ImageClassificationData("digits", heldout_size=300, label_noise=0.2)


class CurationTest(tf.test.TestCase):
    """Tests of one reference and one curation of digits, made once for the class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)  # Untrained weights still give varied, repeatable scores.
        cls.reference = cnn.cnn_classifier(
            (8, 8, 1), 10, widths=(4,), dense_units=0, name="reference"
        )
        out = tempfile.mkdtemp(prefix="curated")
        cls.addClassCleanup(shutil.rmtree, out, ignore_errors=True)
        manifest = curate.curate(
            cls.reference, _data(), out, keep_fraction=0.5, examples_per_shard=300
        )
        cls.curation = out, manifest

    def test_keeps_exactly_the_top_fraction(self):
        curation = self.curation
        out, manifest = curation
        data = _data()
        split = data.splits["train"]
        scores = np.load(os.path.join(out, "scores.npz"))
        np.testing.assert_array_equal(scores["example_id"], split.ids)
        np.testing.assert_array_equal(scores["label"], split.labels)
        np.testing.assert_array_equal(scores["corrupted"], split.corrupted)
        k = round(0.5 * len(split))
        self.assertEqual(manifest["scored"], len(split))
        self.assertEqual(manifest["kept"], k)
        names = ["curated-00000-of-00002.tfrecord", "curated-00001-of-00002.tfrecord"]
        self.assertEqual(manifest["shards"], dict(zip(names, [300, k - 300], strict=True)))
        kept = set(curated.load_split(out)[3].tolist())
        top = set(split.ids[np.argsort(-scores["score"], kind="stable")[:k]].tolist())
        self.assertEqual(kept, top)
        # Every kept score is at least every dropped one.
        is_kept = np.isin(split.ids, list(kept))
        self.assertGreaterEqual(scores["score"][is_kept].min(), scores["score"][~is_kept].max())
        for png in ("score_histogram.png", "extremes.png"):
            self.assertGreater(os.path.getsize(os.path.join(out, png)), 1000)

    def test_ids_and_scores_are_stable_across_runs(self):
        curation = self.curation
        reference = self.reference
        tmp_dir = pathlib.Path(self.get_temp_dir())
        np.testing.assert_array_equal(_data().splits["train"].ids, _data().splits["train"].ids)
        curate.curate(reference, _data(), str(tmp_dir), keep_fraction=0.5, plots=False)
        first = np.load(os.path.join(curation[0], "scores.npz"))
        again = np.load(os.path.join(tmp_dir, "scores.npz"))
        for key in ("example_id", "score", "label", "corrupted"):
            np.testing.assert_array_equal(first[key], again[key])

    def test_learnability_score_is_actor_minus_reference_loss(self):
        reference = self.reference
        keras.utils.set_random_seed(1)
        actor = cnn.cnn_classifier((8, 8, 1), 10, widths=(4,), dense_units=0, name="actor")
        split = _data().splits["train"]
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        got = curate.score_split(split, reference, loss, actor=actor, batch_size=256)
        x = split.images.astype(np.float32) / 255.0
        want = loss.call(split.labels, actor(x)) - loss.call(split.labels, reference(x))
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)

    def test_tfrecords_round_trip_images_labels_and_ids(self):
        curation = self.curation
        out, _ = curation
        split = _data().splits["train"]
        row = {int(i): p for p, i in enumerate(split.ids)}
        seen = 0
        shards = os.path.join(out, "curated-*.tfrecord")
        for x, y, meta in curated.curated_dataset(shards).batch(200):
            p = [row[int(i)] for i in meta["example_id"].numpy()]
            np.testing.assert_array_equal(
                np.round(x.numpy() * 255).astype(np.uint8), split.images[p]
            )
            np.testing.assert_array_equal(y.numpy(), split.labels[p])
            np.testing.assert_array_equal(meta["corrupted"].numpy(), split.corrupted[p])
            seen += len(p)
        self.assertEqual(seen, 550)

    def test_training_data_reads_the_curated_split(self):
        curation = self.curation
        out, _ = curation
        data = ImageClassificationData("digits", heldout_size=300, label_noise=0.2, curated_dir=out)
        self.assertEqual(len(data.splits["train"]), 550)
        self.assertEqual(len(data.splits["test"]), 397)
        x, y, meta = next(iter(data.train_dataset(32)))
        self.assertEqual(x.shape, (32, 8, 8, 1))
        self.assertEqual(set(meta), {"corrupted", "example_id"})
        self.assertTrue(np.isin(meta["example_id"].numpy(), data.splits["train"].ids).all())

    def test_truncated_or_short_shard_is_reported_by_name(self):
        curation = self.curation
        tmp_dir = pathlib.Path(self.get_temp_dir())
        src, _ = curation
        for name in os.listdir(src):
            if name.endswith(".tfrecord") or name == curated.MANIFEST:
                with open(os.path.join(src, name), "rb") as f, open(tmp_dir / name, "wb") as g:
                    g.write(f.read())
        shard = tmp_dir / "curated-00001-of-00002.tfrecord"
        raw = shard.read_bytes()
        shard.write_bytes(raw[: len(raw) - 7])  # Cut inside the last record.
        with self.assertRaisesRegex(
            curated.CorruptShardError, "curated-00001-of-00002.tfrecord.*truncated"
        ):
            curated.curated_dataset(str(tmp_dir))
        # Cut exactly at a record boundary: only the manifest's count can tell.
        first = tmp_dir / "curated-00000-of-00002.tfrecord"
        record = next(iter(tf.data.TFRecordDataset(str(first)))).numpy()
        record_bytes = 16 + len(record)  # Length, its CRC, the data, its CRC.
        shard.write_bytes(raw[: len(raw) - record_bytes])
        with self.assertRaisesRegex(curated.CorruptShardError, "manifest says 250"):
            curated.verify_shards(str(tmp_dir))
        with self.assertRaisesRegex(FileNotFoundError, "No curated TFRecord shards"):
            curated.curated_dataset(str(tmp_dir / "nothing"))

    def test_cli_writes_the_outputs(self):
        reference = self.reference
        tmp_dir = pathlib.Path(self.get_temp_dir())
        ref = str(tmp_dir / "reference.keras")
        reference.save(ref)
        out = str(tmp_dir / "out")
        argv = [f"--reference={ref}", "--data=digits"]
        argv += [
            "--heldout_size=300",
            "--label_noise=0.2",
            "--keep_fraction=0.25",
            f"--out_dir={out}",
        ]
        # In process (`python -m active_keras.curation.curate` runs this `main`): a child process
        # would spend most of its time importing TensorFlow.
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            status = curate.main(argv)
        self.assertEqual(status, 0)
        self.assertIn("kept 275 of 1100 (easy_reference)", stdout.getvalue())
        with open(os.path.join(out, "manifest.json")) as f:
            self.assertEqual(json.load(f)["kept"], 275)


class CurateCliTest(tf.test.TestCase):
    def test_cli_rejects_a_bad_keep_fraction(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        argv = ["--reference=none.keras", "--data=digits", "--heldout_size=300"]
        with contextlib.redirect_stderr(io.StringIO()) as err:
            status = curate.main(argv + ["--keep_fraction=1.5", f"--out_dir={tmp_dir}"])
        self.assertEqual(status, 1)
        self.assertIn("keep_fraction must be in (0, 1]", err.getvalue())


if __name__ == "__main__":
    tf.test.main()
