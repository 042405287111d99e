"""Joint (JEST-style) selection: choose the sub-batch chunk by chunk.

Per-pair scores ignore that a pair's contrastive loss depends on the rest of its
batch. Joint selection (Evans et al. 2024, arXiv 2406.17711) builds the
sub-batch in `n_chunks` chunks; each chunk is drawn (Gumbel-top-k without
replacement, or top-k) with scores conditioned on the pairs already chosen:

    score_j = scores[j] + sum_M sign_M * interaction_M(j, S)

where `scores` are the policy's per-pair scores (e.g. the negative-dot
learnability), `S` the pairs chosen so far, `M` the models whose outputs scoring
computed (sign -1 for the reference, +1 for actor and learner, as in the
policies), and `interaction_M(j, S)` the extra contrastive loss of adding `j`
to `S` under model `M`:

* `"sigmoid"`: `sum_{s in S} softplus(t x_j.y_s + b) + softplus(t x_s.y_j + b)`
  (the SigLIP negative terms between `j` and `S`);
* `"softmax"`: `log(1 + sum_{s in S} exp(t (x_j.y_s - x_j.y_j)))` plus the same
  for text->image (pair `j`'s CLIP loss over `S + {j}`).

With `S` empty the interaction is 0, so the first chunk (and `n_chunks=1`) is
plain per-pair selection. Everything has static shapes (chunks unrolled in
Python, masks instead of boolean indexing), so it compiles under XLA.

Example:

```python
from active_keras.selection import joint, selectors

selectors.get("joint")  # 4 sampled chunks, sigmoid interactions
model = ActiveLearner(learner, reference, example_loss=losses.negative_dot,
                      selection=joint.make_joint(n_chunks=8, interaction="softmax"))
```
"""

import keras
import tensorflow as tf

from active_keras.models import clip_outputs
from active_keras.selection import selectors

_NEG = -1e9  # Stands in for -inf: keeps masked logits finite under XLA.
_SIGNS = {"learner": 1.0, "actor": 1.0, "reference": -1.0}


def chunk_sizes(k, n_chunks):
    """Sizes of `n_chunks` chunks summing to `k`, the first ones one larger."""
    if not 0 < n_chunks <= k:
        raise ValueError(f"n_chunks must be in [1, k={k}], got {n_chunks}.")
    return [k // n_chunks + (1 if i < k % n_chunks else 0) for i in range(n_chunks)]


def _pair_logits(y_pred):
    parts = clip_outputs.unpack(y_pred)
    sim = tf.matmul(parts["image"], parts["text"], transpose_b=True)  # [B, B]: x_i . y_j
    return parts["logit_scale"] * sim, parts["logit_bias"]


def _sigmoid_interaction(y_pred):
    """`f(m) -> [B]`: SigLIP negative terms between each candidate and the pairs with m=1."""
    logits, bias = _pair_logits(y_pred)
    neg = tf.math.softplus(logits + bias)  # -log sigmoid(-(t x_i.y_j + b)).
    both = neg + tf.transpose(neg)
    return lambda m: tf.linalg.matvec(both, m)


def _softmax_interaction(y_pred):
    """`f(m) -> [B]`: candidate j's CLIP loss over the pairs with m=1 plus itself."""
    logits, _ = _pair_logits(y_pred)
    diag = tf.linalg.diag_part(logits)
    rows = logits - diag[:, None]  # Image j against text s, relative to its own text.
    cols = tf.transpose(logits) - diag[:, None]  # Text j against image s.

    def f(m):
        keep = m[None, :] > 0
        # log(1 + sum_s exp(.)) = softplus(logsumexp(.)); empty S gives softplus(-1e9) = 0.
        row = tf.math.softplus(tf.reduce_logsumexp(tf.where(keep, rows, _NEG), axis=1))
        col = tf.math.softplus(tf.reduce_logsumexp(tf.where(keep, cols, _NEG), axis=1))
        return 0.5 * (row + col)

    return f


_INTERACTIONS = {"sigmoid": _sigmoid_interaction, "softmax": _softmax_interaction}


def make_joint(n_chunks=4, interaction="sigmoid", sample=True):
    """Returns a joint selector `fn(scores, k, temperature, seed, context) -> [k]` indices.

    Args:
        n_chunks: Number of chunks the sub-batch is built in (at most `k`).
        interaction: `"sigmoid"` (SigLIP) or `"softmax"` (CLIP) conditional loss.
        sample: Gumbel-top-k sampling from `softmax(score / temperature)` per
            chunk; False takes each chunk's top-k deterministically.
    """
    if interaction not in _INTERACTIONS:
        raise ValueError(f"Unknown interaction {interaction!r}; choose from {list(_INTERACTIONS)}.")

    def joint(scores, k, temperature=1.0, seed=None, context=None):
        if context is None:
            raise ValueError("Joint selection needs the scoring context (model outputs).")
        if sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}.")
        scores = tf.cast(scores, tf.float32)
        size = scores.shape[0]
        if size is None:
            raise ValueError("Joint selection needs a static super-batch size.")
        terms = [
            (_SIGNS[name], _INTERACTIONS[interaction](out))
            for name, out in sorted(context["outputs"].items())
        ]
        chosen = tf.zeros([size], tf.float32)  # 1.0 where already selected.
        picks = []
        for n in chunk_sizes(k, n_chunks):
            conditional = scores
            for sign, f in terms:
                conditional = conditional + sign * f(chosen)
            logits = conditional / temperature if sample else conditional
            if sample:
                u = keras.random.uniform([size], minval=1e-7, maxval=1.0 - 1e-7, seed=seed)
                logits = logits - tf.math.log(-tf.math.log(u))
            # Already chosen pairs can never be drawn again.
            logits = tf.where(chosen > 0, tf.constant(_NEG, tf.float32), logits)
            index = tf.math.top_k(logits, k=n, sorted=True).indices
            picks.append(index)
            chosen = chosen + tf.reduce_sum(tf.one_hot(index, size, dtype=tf.float32), axis=0)
        return tf.concat(picks, axis=0)

    joint.uses_context = True
    joint.n_chunks = n_chunks
    joint.interaction = interaction
    return joint


joint = make_joint()
joint_topk = make_joint(sample=False)
selectors.register("joint", joint)
selectors.register("joint_topk", joint_topk)
