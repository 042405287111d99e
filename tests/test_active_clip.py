"""ActiveCLIP end to end: ActiveLearner with CLIP towers, contrastive loss, selection."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from active_keras import ActiveLearner, losses
from active_keras.evaluation import clip_eval
from active_keras.losses import contrastive
from active_keras.models import clip, clip_outputs
from active_keras.selection import reference_losses

VOCAB, LENGTH, SIZE, B = 40, 6, 16, 8


def super_batches(n=B, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.zeros([n, LENGTH], np.int32)
    tokens[:, :4] = rng.integers(4, VOCAB, size=(n, 4))
    x = {"image": rng.random((n, SIZE, SIZE, 3), dtype=np.float32), "tokens": tokens}
    y = rng.integers(0, 3, size=n).astype(np.int32)
    meta = {"example_id": np.arange(n, dtype=np.int64)}
    return tf.data.Dataset.from_tensors((x, y, meta)).repeat(2)


def tiny(name, **kw):
    # A CNN image tower keeps the XLA compile of three models short.
    return clip.build_clip(VOCAB, "tiny", SIZE, LENGTH, image_encoder="cnn", name=name, **kw)


class ActiveClipTest(parameterized.TestCase, tf.test.TestCase):
    # The XLA cases compile three models: slow-marked, so apart from the eager ones.
    @parameterized.named_parameters(("joint", "joint"), ("topk", "topk"))
    def test_fit_two_steps_eager(self, selection):
        self._fit_two_steps(selection, "eager")

    @parameterized.named_parameters(("joint", "joint"), ("topk", "topk"))
    @pytest.mark.slow  # Under the parameters: each generated case keeps the mark.
    def test_fit_two_steps_jit(self, selection):
        self._fit_two_steps(selection, "jit")

    def _fit_two_steps(self, selection, mode):
        learner = tiny("learner", width=48, embed_dim=32)
        reference = tiny("reference")
        model = ActiveLearner(
            learner=learner,
            reference=reference,
            policy="learnability",
            example_loss=losses.negative_dot,
            selection=selection,
            keep_fraction=0.5,
            seed=0,
        )
        model.compile(
            optimizer="adam",
            loss=losses.SigLipLoss(),
            run_eagerly=mode == "eager",
            jit_compile=mode == "jit",
        )
        before = [w.numpy().copy() for w in learner.trainable_weights]
        ref_before = [w.numpy().copy() for w in reference.weights]
        history = model.fit(super_batches(), epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][-1]))
        self.assertIn("actor_loss", history.history)
        self.assertTrue(
            any(
                not np.allclose(a, w.numpy())
                for a, w in zip(before, learner.trainable_weights, strict=True)
            )
        )
        for a, w in zip(ref_before, reference.weights, strict=True):
            np.testing.assert_array_equal(a, w.numpy())  # The reference stays frozen.

    def test_score_uses_negative_dot_and_loss_is_per_pair(self):
        learner, reference = tiny("learner"), tiny("reference")
        model = ActiveLearner(learner, reference, example_loss=losses.negative_dot)
        model.compile(optimizer="adam", loss=losses.ClipLoss())
        x, y, _ = next(iter(super_batches()))
        scores, context = model.score(x, y)
        expected = losses.negative_dot(y, model.actor(x)) - losses.negative_dot(y, reference(x))
        np.testing.assert_allclose(scores, expected, atol=1e-5)
        per_pair = model.per_example_loss(y, learner(x))
        self.assertEqual(per_pair.shape, (B,))
        np.testing.assert_allclose(np.mean(per_pair), losses.ClipLoss()(y, learner(x)), rtol=1e-5)
        self.assertEqual(set(context["outputs"]), {"actor", "reference"})

    @parameterized.named_parameters(
        ("negative_dot", "negative_dot"), ("negative_logit", "negative_logit"), ("siglip", "siglip")
    )
    def test_every_scoring_model_uses_the_chosen_example_loss(self, name):
        learner, reference = tiny("learner"), tiny("reference")
        fn = losses.get_example_loss(name)
        model = ActiveLearner(learner, reference, policy="learnability", example_loss=fn)
        model.compile(optimizer="adam", loss=losses.SigLipLoss())
        x, y, _ = next(iter(super_batches()))
        scores, _ = model.score(x, y)
        actor, ref = model.actor(x), reference(x)
        parts = [clip_outputs.unpack(out) for out in (actor, ref)]
        by_hand = {
            "negative_dot": [-np.sum(p["image"] * p["text"], -1) for p in parts],
            "negative_logit": [
                -p["logit_scale"] * np.sum(p["image"] * p["text"], -1) for p in parts
            ],
            "siglip": [contrastive.siglip_per_pair(out) for out in (actor, ref)],
        }[name]
        np.testing.assert_allclose(scores, by_hand[0] - by_hand[1], rtol=1e-5, atol=1e-5)

    def test_logit_units_scale_negative_dot_by_each_models_logit_scale(self):
        x, y, _ = next(iter(super_batches()))
        out = tiny("a")(x)
        scale = clip_outputs.unpack(out)["logit_scale"]
        self.assertAllClose(scale, 10.0)  # SigLIP's initial t.
        self.assertAllClose(losses.negative_logit(y, out), scale * losses.negative_dot(y, out))

    def test_batch_dependent_example_loss_refuses_precomputed_reference_losses(self):
        model = ActiveLearner(
            tiny("learner"), tiny("reference"), example_loss=losses.get_example_loss("siglip")
        )
        with self.assertRaisesRegex(ValueError, "depends on the rest of the super-batch"):
            model.use_reference_losses(np.zeros([B], np.float32))
        with self.assertRaisesRegex(ValueError, "cannot be precomputed"):
            reference_losses.check_precomputable(model)
        with self.assertRaisesRegex(ValueError, "Unknown example loss"):
            losses.get_example_loss("dot")

    def test_evaluate_returns_metrics_in_range(self):
        model = tiny("learner")
        x, y, _ = next(iter(super_batches()))
        tok = lambda texts: np.tile(np.array([[2, 5, 3, 0, 0, 0]], np.int32), (len(texts), 1))  # noqa: E731
        metrics = clip_eval.evaluate_arrays(
            model, x["image"], x["tokens"], y, tok, ["a", "b", "c"], batch_size=3, per_class=1
        )
        self.assertEqual(
            set(metrics),
            {
                "zero_shot_accuracy",
                "zero_shot_accuracy_all",
                "zero_shot_classes",
                "image_to_text_recall@1",
                "image_to_text_recall@5",
                "text_to_image_recall@1",
                "text_to_image_recall@5",
                "num_examples",
            },
        )
        self.assertEqual(metrics["num_examples"], B)
        self.assertEqual(metrics["zero_shot_classes"], len(set(y.numpy().tolist())))
        counts = {"num_examples", "zero_shot_classes"}
        self.assertTrue(all(0.0 <= v <= 1.0 for k, v in metrics.items() if k not in counts))
        self.assertLessEqual(metrics["image_to_text_recall@1"], metrics["image_to_text_recall@5"])

    def test_balanced_subset_keeps_classes_with_enough_examples(self):
        labels = np.array([0] * 5 + [1] * 2 + [2] * 3 + [3] * 1)
        indices, classes = clip_eval.balanced_subset(labels, per_class=3, seed=0)
        self.assertEqual(classes.tolist(), [0, 2])
        self.assertEqual(np.bincount(labels[indices]).tolist(), [3, 0, 3])
        self.assertEqual(indices.tolist(), sorted(set(indices.tolist())))

    def test_balanced_zero_shot_counts_each_kept_class_equally(self):
        # Class 0 (4 images) always right, class 1 (2 images) always wrong, class 2
        # (1 image) left out: imbalanced accuracy 4/7 (or 4/6 without class 2),
        # balanced 1/2 among classes 0 and 1.
        classes = np.eye(3, dtype=np.float32)
        labels = np.array([0, 0, 0, 0, 1, 1, 2])
        images = classes[[0, 0, 0, 0, 2, 2, 2]]
        accuracy, kept = clip_eval.balanced_zero_shot_accuracy(images, labels, classes, 2)
        self.assertEqual(kept, 2)
        # Among classes 0 and 1 only, class 1's images (nearest to class 2) pick class 0 or 1.
        self.assertAllClose(accuracy, 0.5)

    def test_balanced_zero_shot_on_a_too_small_split_falls_back_and_says_so(self):
        classes = np.eye(3, dtype=np.float32)
        labels = np.array([0, 0, 0, 1, 1, 2])  # Only class 0 has 3 images.
        with self.assertWarnsRegex(UserWarning, r"balanced_per_class=3 .*\[3, 2, 1\]\); using 2"):
            accuracy, kept = clip_eval.balanced_zero_shot_accuracy(
                classes[labels], labels, classes, 3
            )
        self.assertEqual(kept, 2)  # Classes 0 and 1, two images each.
        self.assertAllClose(accuracy, 1.0)

    def test_prompt_templates_are_averaged(self):
        model = tiny("learner")
        tok = lambda texts: np.array([[2 + len(t), 5, 0, 0, 0, 0] for t in texts], np.int32)  # noqa: E731
        single = clip_eval.embed_texts(model, tok, ["a", "bb", "ccc"])
        got = clip_eval.class_embeddings(model, tok, [["a", "bb"], "ccc"])
        mean = single[:2].mean(axis=0)
        self.assertAllClose(got[0], mean / np.linalg.norm(mean), atol=1e-5)
        self.assertAllClose(got[1], single[2], atol=1e-5)

    def test_recall_and_zero_shot_by_hand(self):
        queries = np.eye(3, dtype=np.float32)
        targets = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)  # 1 and 2 swapped.
        self.assertEqual(clip_eval.recall_at_k(queries, targets, ks=(1, 2)), {1: 1 / 3, 2: 1.0})
        classes = np.eye(3, dtype=np.float32)
        self.assertAllClose(
            clip_eval.zero_shot_accuracy(queries, [0, 1, 1], classes), 2 / 3, rtol=1e-6, atol=1e-12
        )


if __name__ == "__main__":
    tf.test.main()
