"""The image-text task (ActiveCLIP): data, towers, loss and evaluation.

Implements `active_keras.tasks.base.Task` on Open Clip Art or your own
image-text folder (`active_keras.data.openclipart.ImageTextFolder`). The
learner and the small models are two-tower models from
`active_keras.models.clip` with a packed output; the compiled loss is SigLIP
or CLIP; pairs are scored with `example_loss` (`negative_logit` by default:
`-t z_img . z_txt` in logit units).

Example:

```python
task = ClipTask(vocab_dir=model_dir)  # Saves / reuses model_dir/vocab.txt.
learner = task.build_learner()
print(task.evaluate(learner)["zero_shot_accuracy"])
```
"""

import os

import gin
import numpy as np

from active_keras import losses
from active_keras.data.openclipart import PROMPT, OpenClipArt
from active_keras.evaluation import clip_eval
from active_keras.models import clip
from active_keras.tasks import base
from active_keras.text import tokenizer as tokenizer_lib


@gin.configurable
class ClipTask(base.Task):
    """Image-caption contrastive learning, evaluated zero-shot and by retrieval.

    Args:
        data: An `OpenClipArt` or `ImageTextFolder` (Open Clip Art with
            defaults if None).
        vocab_dir: Where the tokenizer vocabulary is saved / reused; None: the
            run's model directory (set by `train.run` through `use_model_dir`),
            or, outside a run, learned without saving.
        vocab_size: Maximum WordPiece vocabulary size.
        sequence_length: Token length.
        loss_name: `"siglip"` or `"clip"`.
        learner_size: A `clip.SIZES` key for the learner.
        small_size: The same for the actor and the reference.
        reference_size: The reference's size if it differs from `small_size`
            (None: `small_size`). With precomputed reference losses
            (`run.reference_losses`) a larger reference costs nothing per step,
            only its one-time training and one pass over the training pairs.
        image_encoder: `"vit"` or `"cnn"`.
        patch_size: ViT patch side.
        reference_captions: Caption style of the held-out (reference) split:
            `"category"` (cleaner) or `"full"`.
        eval_batch_size: Batch size of evaluation.
        prompt_template: Zero-shot prompt of a class, e.g. `"{}"` (the bare
            category words, which is how training captions begin) or the CLIP
            style default `"a clip art of {}"`, whose words captions never hold.
        prompt_templates: Several templates (e.g. `["{}", "{} icon"]`) whose
            prompt embeddings are averaged per class; None: `[prompt_template]`.
        balanced_per_class: Zero-shot accuracy is measured on this many test
            images of every category that has at least as many, among those
            categories (`clip_eval.balanced_zero_shot_accuracy`); None: on every
            test image (class-imbalanced). Retrieval recall always uses every
            test pair.
        example_loss: The per-pair loss every scoring model (learner, actor,
            reference) scores a pair with (`losses.EXAMPLE_LOSSES`):
            `"negative_logit"` (`-t z_img . z_txt`, t the model's learned logit
            scale: the scores, and so the sampling temperature, are in logit
            units, the same for every model), `"negative_dot"` (`-z_img . z_txt`,
            in [-1, 1], as in the paper) or `"siglip"` (the pair's SigLIP loss
            within the super-batch; it depends on the other pairs, so it cannot
            be precomputed: `run.reference_losses` refuses it).
    """

    primary_metric = "image_to_text_recall@5"

    def __init__(
        self,
        data=None,
        vocab_dir=None,
        vocab_size=2000,
        sequence_length=16,
        loss_name="siglip",
        learner_size="small",
        small_size="tiny",
        reference_size=None,
        image_encoder="vit",
        patch_size=8,
        reference_captions="full",
        eval_batch_size=256,
        prompt_template=PROMPT,
        prompt_templates=None,
        balanced_per_class=None,
        example_loss="negative_logit",
    ):
        self.data = data if data is not None else OpenClipArt()
        self.vocab_dir = vocab_dir
        self.vocab_size = vocab_size
        self.sequence_length = sequence_length
        self._tokenizer = None
        self.loss_name = loss_name
        self.learner_size = learner_size
        self.small_size = small_size
        self.reference_size = reference_size
        self.image_encoder = image_encoder
        self.patch_size = patch_size
        self.reference_captions = reference_captions
        self.eval_batch_size = eval_batch_size
        self.prompt_template = prompt_template
        self.prompt_templates = list(prompt_templates or [prompt_template])
        self.balanced_per_class = balanced_per_class
        self.example_loss_name = example_loss
        self.example_loss = losses.get_example_loss(example_loss)
        if vocab_dir is not None:
            self.tokenizer  # noqa: B018 - saves / checks the vocabulary now, as before.

    @property
    def tokenizer(self):
        """The caption tokenizer: loaded from / learned into `vocab_dir` on first use."""
        if self._tokenizer is None:
            self._tokenizer = tokenizer_lib.load_or_learn(
                self.vocab_dir, self.data.captions("train"), self.vocab_size, self.sequence_length
            )
        return self._tokenizer

    def use_model_dir(self, model_dir):
        """Hook of `train.run`: the run's vocabulary lives in its model directory.

        Without a bound `vocab_dir` the vocabulary is loaded from (or learned
        into) `model_dir/vocab.txt`. With one (a vocabulary shared by several
        runs, learned once), it is read there and a copy is written to
        `model_dir`, so every run directory holds the ids it trained with.
        """
        if self.vocab_dir is None:
            self.vocab_dir = model_dir
        if os.path.abspath(self.vocab_dir) != os.path.abspath(model_dir):
            self.tokenizer.save(os.path.join(model_dir, tokenizer_lib.VOCAB_FILENAME))

    def dataset(self, split, batch_size, **kwargs):
        style = self.reference_captions if split == "heldout" else "full"
        return self.data.dataset(split, self.tokenizer, batch_size, caption_style=style, **kwargs)

    def _build(self, size, name):
        return clip.build_clip(
            self.tokenizer.vocab_size,
            size,
            image_size=self.data.image_size,
            sequence_length=self.tokenizer.sequence_length,
            image_encoder=self.image_encoder,
            patch_size=self.patch_size,
            loss=self.loss_name,
            name=name,
        )

    def build_learner(self):
        return self._build(self.learner_size, "learner")

    def build_small(self, name="small"):
        if name == "reference" and self.reference_size is not None:
            return self._build(self.reference_size, name)
        return self._build(self.small_size, name)

    def loss(self):
        return losses.get(self.loss_name)

    def metrics(self):
        return []

    def check_model(self, model, role):
        """Raises ValueError if `model` does not fit this task's images and tokens."""
        want = {
            "image": (self.data.image_size, self.data.image_size, 3),
            "tokens": (self.tokenizer.sequence_length,),
        }
        got = {t.name: tuple(t.shape[1:]) for t in model.inputs}
        if got != want:
            raise ValueError(
                f"The {role} model takes inputs {got}; this task feeds {want}. Retrain it "
                "for this data (delete the file, or point the reference path elsewhere)."
            )
        vocab = model.get_layer("text_tower").get_layer("embedding").input_dim
        if vocab != self.tokenizer.vocab_size:
            raise ValueError(
                f"The {role} model has a vocabulary of {vocab} tokens; the tokenizer has "
                f"{self.tokenizer.vocab_size}. Reuse the run's vocab.txt or retrain it."
            )

    def evaluate(self, model, split="test"):
        """Zero-shot accuracy (balanced: `balanced_per_class`) and recall@1/@5 on `split`."""
        ds = self.dataset(
            split, self.eval_batch_size, shuffle=False, repeat=False, drop_remainder=False
        )
        per_template = [self.data.prompts(t) for t in self.prompt_templates]
        prompts = [list(group) for group in zip(*per_template, strict=True)]  # Per class.
        return clip_eval.evaluate(
            model, ds, self.tokenizer, prompts, per_class=self.balanced_per_class
        )

    def describe_batch(self, x, y, metadata):
        """Per-example facts for selection reports (the category label and the caption)."""
        del x
        facts = {"label": np.asarray(y)}
        if "example_id" in metadata:
            facts["caption"] = self.data.captions_of(metadata["example_id"])
        return facts
