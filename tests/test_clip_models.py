"""Two-tower CLIP builders: sizes, normalised outputs, padding masks, saving."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pathlib

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.models import clip, clip_outputs

VOCAB, LENGTH, SIZE = 50, 8, 32


def inputs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.zeros([n, LENGTH], np.int32)
    tokens[:, :5] = rng.integers(4, VOCAB, size=(n, 5))
    return {"image": rng.random((n, SIZE, SIZE, 3), dtype=np.float32), "tokens": tokens}


class ClipModelsTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.named_parameters(("vit", "vit"), ("cnn", "cnn"))
    def test_sizes_and_normalised_outputs(self, encoder):
        params = []
        for size in ("tiny", "small"):
            model = clip.build_clip(VOCAB, size, SIZE, LENGTH, image_encoder=encoder)
            y = model(inputs())
            d = clip.SIZES[size]["embed_dim"]
            self.assertEqual(y.shape, (3, 2 * d + 2))
            parts = clip_outputs.unpack(y)
            np.testing.assert_allclose(np.linalg.norm(parts["image"], axis=1), 1.0, rtol=1e-5)
            np.testing.assert_allclose(np.linalg.norm(parts["text"], axis=1), 1.0, rtol=1e-5)
            params.append(model.count_params())
        self.assertLess(params[0], params[1])

    def test_initial_scale_and_bias_follow_the_loss(self):
        for loss, (scale, bias) in clip.LOSS_INIT.items():
            parts = clip_outputs.unpack(
                clip.build_clip(VOCAB, "tiny", SIZE, LENGTH, loss=loss)(inputs())
            )
            np.testing.assert_allclose(float(parts["logit_scale"]), scale, rtol=1e-5)
            np.testing.assert_allclose(float(parts["logit_bias"]), bias, rtol=1e-5)

    def test_text_tower_ignores_padding(self):
        model = clip.build_clip(VOCAB, "tiny", SIZE, LENGTH)
        tower = model.get_layer("text_tower")
        tokens = inputs()["tokens"]
        before = tower(tokens).numpy()
        # Change what padding (id 0) embeds to: masked positions must not matter.
        embedding = tower.get_layer("embedding")
        weights = embedding.get_weights()[0]
        weights[0] = 100.0
        embedding.set_weights([weights])
        np.testing.assert_allclose(tower(tokens).numpy(), before, atol=1e-5)
        # Whereas a real token does (a random change: LayerNorm ignores a constant shift).
        weights[tokens[0, 0]] = np.random.default_rng(1).normal(size=weights.shape[1])
        embedding.set_weights([weights])
        self.assertFalse(np.allclose(tower(tokens).numpy()[0], before[0], atol=0.001))

    def test_save_load_and_clone(self):
        tmp_dir = pathlib.Path(self.get_temp_dir())
        model = clip.build_clip(VOCAB, "tiny", SIZE, LENGTH, image_encoder="cnn")
        x = inputs()
        path = str(tmp_dir / "clip.keras")
        model.save(path)
        np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), atol=1e-6)
        self.assertEqual(keras.models.clone_model(model)(x).shape, model(x).shape)

    def test_vit_towers_are_keras_hub_blocks_and_survive_saving(self):
        model = clip.build_clip(VOCAB, "small", SIZE, LENGTH, image_encoder="vit")
        for tower in ("image_tower", "text_tower"):
            layers = model.get_layer(tower).layers
            blocks = [t for t in layers if isinstance(t, keras_hub.layers.TransformerEncoder)]
            self.assertLen(blocks, clip.SIZES["small"]["depth"])
            self.assertTrue(all(b.normalize_first and b.num_heads == 4 for b in blocks))
            self.assertTrue(any(isinstance(t, keras_hub.layers.PositionEmbedding) for t in layers))
        x = inputs()
        path = str(pathlib.Path(self.get_temp_dir()) / "vit.keras")
        model.save(path)
        np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), atol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "size"):
            clip.build_clip(VOCAB, "huge")
        with self.assertRaisesRegex(ValueError, "patch_size"):
            clip.build_clip(VOCAB, "tiny", image_size=30, patch_size=8)
        with self.assertRaisesRegex(ValueError, "overrides"):
            clip.build_clip(VOCAB, "tiny", widht=3)


if __name__ == "__main__":
    tf.test.main()
