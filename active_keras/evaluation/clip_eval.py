"""Zero-shot classification and image-text retrieval for two-tower CLIP models.

Works on any model built by `active_keras.models.clip.build_clip` (it uses the
nested `"image_tower"` and `"text_tower"` models, so prompts are embedded
without images).

Example:

```python
from active_keras.evaluation import clip_eval

test = data.dataset("test", tok, batch_size=256)
metrics = clip_eval.evaluate(learner, test, tok, data.prompts())
# {"zero_shot_accuracy": ..., "image_to_text_recall@1": ..., ..., "num_examples": ...}
```
"""

import numpy as np
import tensorflow as tf


def embed_texts(model, tokenizer, texts, batch_size=256):
    """Normalised text embeddings `[N, D]` (numpy) of a list of strings."""
    tower = model.get_layer("text_tower")
    tokens = np.asarray(tokenizer(list(texts)))
    return np.asarray(tower.predict(tokens, batch_size=batch_size, verbose=0), np.float32)


def embed_dataset(model, dataset):
    """Embeds every pair of a dataset of `(x, y, ...)` batches.

    Returns:
        `(image_embeddings [N, D], text_embeddings [N, D], labels [N])`, numpy.
    """
    image_tower, text_tower = model.get_layer("image_tower"), model.get_layer("text_tower")
    images, texts, labels = [], [], []
    for batch in dataset:
        x, y = batch[0], batch[1]
        images.append(image_tower(x["image"], training=False).numpy())
        texts.append(text_tower(x["tokens"], training=False).numpy())
        labels.append(np.asarray(y))
    return np.concatenate(images), np.concatenate(texts), np.concatenate(labels)


def zero_shot_accuracy(image_embeddings, labels, class_embeddings):
    """Fraction of images whose most similar class prompt is their label."""
    predictions = np.argmax(image_embeddings @ class_embeddings.T, axis=1)
    return float(np.mean(predictions == np.asarray(labels)))


def recall_at_k(query_embeddings, target_embeddings, ks=(1, 5)):
    """Retrieval recall@k where query `i`'s match is target `i`.

    A query counts as a hit at `k` when fewer than `k` targets score strictly
    higher than its match (ties favour the match).

    Returns:
        `{k: recall}` floats.
    """
    sim = query_embeddings @ target_embeddings.T
    positive = np.diag(sim)
    rank = np.sum(sim > positive[:, None], axis=1)  # 0 = the match is first.
    return {k: float(np.mean(rank < k)) for k in ks}


def evaluate(model, dataset, tokenizer, prompts, ks=(1, 5)):
    """Zero-shot accuracy and retrieval recall@k over a test dataset.

    Args:
        model: A two-tower model from `build_clip` (e.g. the trained learner).
        dataset: Finite `tf.data` of `({"image", "tokens"}, label, ...)` batches,
            labels indexing `prompts` (e.g. `OpenClipArt.dataset("test", ...)`).
        tokenizer: The run's `CaptionTokenizer`.
        prompts: One prompt per class (e.g. `OpenClipArt.prompts()`).
        ks: Recall cut-offs.

    Returns:
        Dict of floats: `zero_shot_accuracy`, `image_to_text_recall@k`,
        `text_to_image_recall@k` for each k, and `num_examples`.
    """
    images, texts, labels = embed_dataset(model, dataset)
    classes = embed_texts(model, tokenizer, prompts)
    metrics = {"zero_shot_accuracy": zero_shot_accuracy(images, labels, classes)}
    for k, value in recall_at_k(images, texts, ks).items():
        metrics[f"image_to_text_recall@{k}"] = value
    for k, value in recall_at_k(texts, images, ks).items():
        metrics[f"text_to_image_recall@{k}"] = value
    metrics["num_examples"] = float(len(labels))
    return metrics


def evaluate_arrays(model, images, tokens, labels, tokenizer, prompts, batch_size=256, ks=(1, 5)):
    """`evaluate` on in-memory arrays (images `[N, S, S, 3]`, tokens `[N, L]`, labels `[N]`)."""
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"image": images, "tokens": tokens}, labels)
    ).batch(batch_size)
    return evaluate(model, dataset, tokenizer, prompts, ks)
