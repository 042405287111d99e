"""Zero-shot classification and image-text retrieval for two-tower CLIP models.

Works on any model built by `active_keras.models.clip.build_clip` (it uses the
nested `"image_tower"` and `"text_tower"` models, so prompts are embedded
without images).

Zero-shot accuracy on a class-imbalanced test set mostly measures how often the
largest categories win (Open Clip Art's test split: 165 "shapes", 155
"computer", 1 "science"). With `per_class=n`, zero-shot accuracy is measured on
a class-balanced subset instead: `n` images of every category that has at least
`n` test images (chosen with a fixed seed), classified among those categories
only, so chance is `1 / categories`. Each category's prompt may be several
templates, whose normalised text embeddings are averaged (CLIP's prompt
ensembling). Retrieval recall@k (image->text and text->image) uses every test
pair.

Example:

```python
from active_keras.evaluation import clip_eval

test = data.dataset("test", tok, batch_size=256)
metrics = clip_eval.evaluate(learner, test, tok, data.prompts())
# {"zero_shot_accuracy": ..., "image_to_text_recall@1": ..., ..., "num_examples": ...}
```
"""

import warnings

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


def class_embeddings(model, tokenizer, prompts):
    """Normalised `[C, D]` class embeddings: each class's prompts' embeddings, averaged.

    Args:
        model: A two-tower model.
        tokenizer: The caption tokenizer.
        prompts: One entry per class: a prompt string, or a sequence of prompts
            (templates filled with the class name) whose embeddings are averaged.
    """
    groups = [[p] if isinstance(p, str) else list(p) for p in prompts]
    flat = embed_texts(model, tokenizer, [p for group in groups for p in group])
    ends = np.cumsum([len(group) for group in groups])
    means = np.stack([chunk.mean(axis=0) for chunk in np.split(flat, ends[:-1])])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def balanced_subset(labels, per_class, seed=0):
    """Sorted indices of `per_class` examples of each class with at least that many.

    Returns:
        `(indices, classes)`: the chosen example indices and the kept classes.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(labels) if np.sum(labels == c) >= per_class]
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    indices = np.sort(np.concatenate(chosen)) if chosen else np.zeros([0], np.int64)
    return indices, np.asarray(classes, np.int64)


def balanced_zero_shot_accuracy(image_embeddings, labels, class_embeddings, per_class, seed=0):
    """Zero-shot accuracy on a class-balanced subset, among the kept classes only.

    Returns:
        `(accuracy, number of kept classes)`. When fewer than two classes have
        `per_class` examples (a small test split), `per_class` falls back to the
        second-largest class size, with a warning; NaN with a single class.
    """
    indices, classes = balanced_subset(labels, per_class, seed)
    if len(classes) < 2:
        counts = sorted(np.unique(np.asarray(labels), return_counts=True)[1].tolist(), reverse=True)
        if len(counts) < 2:
            return float("nan"), len(counts)
        warnings.warn(
            f"Balanced zero-shot accuracy: fewer than two test categories have "
            f"ClipTask.balanced_per_class={per_class} images (the largest have {counts[:5]}); "
            f"using {counts[1]} per category. Lower ClipTask.balanced_per_class to silence this.",
            stacklevel=2,
        )
        indices, classes = balanced_subset(labels, counts[1], seed)
    position = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([position[c] for c in np.asarray(labels)[indices]])
    accuracy = zero_shot_accuracy(image_embeddings[indices], labels, class_embeddings[classes])
    return accuracy, len(classes)


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


def evaluate(model, dataset, tokenizer, prompts, ks=(1, 5), per_class=None, seed=0):
    """Zero-shot accuracy and retrieval recall@k over a test dataset.

    Args:
        model: A two-tower model from `build_clip` (e.g. the trained learner).
        dataset: Finite `tf.data` of `({"image", "tokens"}, label, ...)` batches,
            labels indexing `prompts` (e.g. `OpenClipArt.dataset("test", ...)`).
        tokenizer: The run's `CaptionTokenizer`.
        prompts: Per class a prompt or a sequence of prompts (averaged; see
            `class_embeddings`).
        ks: Recall cut-offs.
        per_class: If set, `zero_shot_accuracy` is measured on a class-balanced
            subset of this many images per class (`balanced_zero_shot_accuracy`);
            None: on every image, among all classes.
        seed: Seed of the balanced subset.

    Returns:
        Dict of floats: `zero_shot_accuracy`, `image_to_text_recall@k`,
        `text_to_image_recall@k` for each k, and `num_examples`; with
        `per_class`, also `zero_shot_classes` (classes kept) and
        `zero_shot_accuracy_all` (every image, every class).
    """
    images, texts, labels = embed_dataset(model, dataset)
    classes = class_embeddings(model, tokenizer, prompts)
    overall = zero_shot_accuracy(images, labels, classes)
    metrics = {"zero_shot_accuracy": overall}
    if per_class:
        balanced, kept = balanced_zero_shot_accuracy(images, labels, classes, per_class, seed)
        metrics.update(
            zero_shot_accuracy=balanced,
            zero_shot_classes=float(kept),
            zero_shot_accuracy_all=overall,
        )
    for k, value in recall_at_k(images, texts, ks).items():
        metrics[f"image_to_text_recall@{k}"] = value
    for k, value in recall_at_k(texts, images, ks).items():
        metrics[f"text_to_image_recall@{k}"] = value
    metrics["num_examples"] = float(len(labels))
    return metrics


def evaluate_arrays(
    model, images, tokens, labels, tokenizer, prompts, batch_size=256, ks=(1, 5), **kwargs
):
    """`evaluate` on in-memory arrays (images `[N, S, S, 3]`, tokens `[N, L]`, labels `[N]`)."""
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"image": images, "tokens": tokens}, labels)
    ).batch(batch_size)
    return evaluate(model, dataset, tokenizer, prompts, ks, **kwargs)
