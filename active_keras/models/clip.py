"""Two-tower image-text models (CLIP / SigLIP) in plain Keras 3.

One builder makes the learner, the actor and the reference at different sizes.
The ViT and text transformer blocks are keras-hub's `TransformerEncoder`
(pre-norm, GELU MLP of 4x the width) and the learned position embeddings
keras-hub's `PositionEmbedding`, built from config (no presets: nothing is
downloaded); patchifying, pooling, projections and the logit scale are plain
Keras layers.
The model takes `{"image": [B, H, W, 3] float in [0, 1], "tokens": [B, L] int}`
(token 0 is padding) and returns ONE packed tensor `[B, 2 * D + 2]`: the
L2-normalised image and text embeddings, then the learnable logit scale
(temperature) and logit bias, repeated per row (layout and the reason in
`active_keras.models.clip_outputs`). The towers are nested models named
`"image_tower"` and `"text_tower"`, each mapping its input to normalised `[B, D]`
embeddings, so evaluation can embed images or prompts alone.

Example:

```python
from active_keras.models import clip

learner = clip.build_clip(vocab_size=2000, size="small", loss="siglip")
reference = clip.build_clip(vocab_size=2000, size="tiny", loss="siglip")
image_tower = learner.get_layer("image_tower")
```
"""

import math

import keras
import keras_hub
from keras import layers, ops

# Tower sizes: width, depth, heads and embedding size of both towers.
SIZES = {
    "tiny": dict(width=32, depth=1, num_heads=2, embed_dim=32),
    "small": dict(width=64, depth=2, num_heads=4, embed_dim=64),
    "base": dict(width=128, depth=4, num_heads=4, embed_dim=64),
}

# Initial (logit scale, logit bias): CLIP starts at temperature 0.07 and has no
# bias; SigLIP starts at t = 10, b = -10 (Zhai et al. 2023).
LOSS_INIT = {"clip": (1.0 / 0.07, 0.0), "siglip": (10.0, -10.0)}
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp, to keep training stable.


@keras.saving.register_keras_serializable(package="active_keras")
class L2Normalize(layers.Layer):
    """Scales each row to unit L2 norm."""

    def call(self, x):
        return ops.normalize(x, axis=-1, order=2, epsilon=1e-6)


@keras.saving.register_keras_serializable(package="active_keras")
class LogitScaleBias(layers.Layer):
    """Learnable logit scale (stored as a log, clamped) and bias, broadcast to `[B, 2]`.

    Args:
        init_scale: Initial logit scale (inverse temperature).
        init_bias: Initial logit bias (used by SigLIP; CLIP ignores it).
        learn_bias: Whether the bias trains (CLIP's gets no gradient anyway).
    """

    def __init__(self, init_scale=10.0, init_bias=-10.0, learn_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.init_scale = float(init_scale)
        self.init_bias = float(init_bias)
        self.learn_bias = bool(learn_bias)

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            name="log_scale",
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.init_scale)),
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(),
            initializer=keras.initializers.Constant(self.init_bias),
            trainable=self.learn_bias,
        )

    def call(self, reference):
        scale = ops.exp(ops.minimum(self.log_scale, math.log(MAX_LOGIT_SCALE)))
        ones = ops.ones_like(reference[:, :1])  # Batch size from any [B, ...] tensor.
        return ops.concatenate([ones * scale, ones * self.bias], axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "init_scale": self.init_scale,
            "init_bias": self.init_bias,
            "learn_bias": self.learn_bias,
        }


def _positions(x, name):
    """`x [B, T, W]` plus a learned position embedding (keras-hub's, from config)."""
    positions = keras_hub.layers.PositionEmbedding(
        x.shape[1], initializer=keras.initializers.RandomNormal(stddev=0.02), name=name
    )(x)
    return layers.Add(name=f"{name}_add")([x, positions])


def _transformer_block(x, width, num_heads, padding_mask=None, name="block"):
    """Pre-norm transformer encoder block: keras-hub's `TransformerEncoder`, from config."""
    block = keras_hub.layers.TransformerEncoder(
        intermediate_dim=4 * width,
        num_heads=num_heads,
        activation="gelu",
        layer_norm_epsilon=1e-6,
        normalize_first=True,
        name=name,
    )
    return block(x, padding_mask=padding_mask)


def image_tower(
    image_size=64,
    encoder="vit",
    width=64,
    depth=2,
    num_heads=4,
    embed_dim=64,
    patch_size=8,
    name="image_tower",
):
    """Image encoder `[B, H, W, 3]` -> normalised `[B, embed_dim]`.

    Args:
        image_size: Side of the square input images.
        encoder: `"vit"` (patches, transformer blocks, mean pooling) or `"cnn"`
            (`depth` strided conv blocks of `width * 2**i` channels, global pooling).
        width: Token width (ViT) or first conv width (CNN).
        depth: Transformer blocks or conv blocks.
        num_heads: Attention heads (ViT).
        embed_dim: Size of the shared embedding.
        patch_size: ViT patch side; must divide `image_size`.
        name: Model name.
    """
    images = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_symmetric")(images)  # [0,1] -> [-1,1]
    if encoder == "vit":
        if image_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}.")
        x = layers.Conv2D(width, patch_size, strides=patch_size, name="patchify")(x)
        x = layers.Reshape(((image_size // patch_size) ** 2, width), name="tokens")(x)
        x = _positions(x, "position")
        for i in range(depth):
            x = _transformer_block(x, width, num_heads, name=f"block{i}")
        x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
        x = layers.GlobalAveragePooling1D(name="pool")(x)
    elif encoder == "cnn":
        for i in range(depth):
            x = layers.Conv2D(width * 2**i, 3, strides=2, padding="same", name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.Activation("relu", name=f"relu{i}")(x)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        raise ValueError(f"Unknown image encoder {encoder!r}; choose 'vit' or 'cnn'.")
    x = layers.Dense(embed_dim, use_bias=False, name="projection")(x)
    return keras.Model(images, L2Normalize(name="normalize")(x), name=name)


def text_tower(
    vocab_size,
    sequence_length=16,
    width=64,
    depth=2,
    num_heads=4,
    embed_dim=64,
    name="text_tower",
):
    """Text encoder `[B, L]` int tokens (0 = padding) -> normalised `[B, embed_dim]`.

    Padding is masked out of attention and of the mean pooling.
    """
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    valid = ops.cast(ops.not_equal(tokens, 0), "float32")  # [B, L]
    # Each query attends to real tokens only (keras-hub masks the padded keys).
    padding_mask = ops.not_equal(tokens, 0)
    x = layers.Embedding(vocab_size, width, name="embedding")(tokens)
    x = _positions(x, "position")
    for i in range(depth):
        x = _transformer_block(x, width, num_heads, padding_mask, name=f"block{i}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    weights = ops.expand_dims(valid, -1)
    x = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
    x = layers.Dense(embed_dim, use_bias=False, name="projection")(x)
    return keras.Model(tokens, L2Normalize(name="normalize")(x), name=name)


def build_clip(
    vocab_size,
    size="small",
    image_size=64,
    sequence_length=16,
    image_encoder="vit",
    patch_size=8,
    loss="siglip",
    name=None,
    **overrides,
):
    """Builds a two-tower model with packed output `[B, 2 * embed_dim + 2]`.

    Args:
        vocab_size: Tokenizer vocabulary size.
        size: A key of `SIZES` ("tiny", "small", "base").
        image_size: Input image side.
        sequence_length: Token sequence length.
        image_encoder: `"vit"` or `"cnn"`.
        patch_size: ViT patch side.
        loss: `"clip"` or `"siglip"`: picks the initial logit scale and bias.
        name: Model name (defaults to `clip_<size>`).
        **overrides: Replace entries of the size preset (`width`, `depth`,
            `num_heads`, `embed_dim`).

    Returns:
        A functional `keras.Model` with inputs `{"image", "tokens"}`.
    """
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}; choose from {sorted(SIZES)}.")
    if loss not in LOSS_INIT:
        raise ValueError(f"Unknown loss {loss!r}; choose from {sorted(LOSS_INIT)}.")
    unknown = set(overrides) - set(SIZES[size])
    if unknown:
        raise ValueError(f"Unknown size overrides {sorted(unknown)}.")
    cfg = {**SIZES[size], **overrides}
    images = keras.Input((image_size, image_size, 3), name="image")
    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    z_img = image_tower(image_size, image_encoder, patch_size=patch_size, **cfg)(images)
    z_txt = text_tower(vocab_size, sequence_length, **cfg)(tokens)
    init_scale, init_bias = LOSS_INIT[loss]
    scale_bias = LogitScaleBias(init_scale, init_bias, learn_bias=loss == "siglip", name="logit")(
        z_img
    )
    outputs = layers.Concatenate(name="packed")([z_img, z_txt, scale_bias])
    return keras.Model({"image": images, "tokens": tokens}, outputs, name=name or f"clip_{size}")
