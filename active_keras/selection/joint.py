"""Joint (JEST-style) selection: choose the sub-batch chunk by chunk.

Per-pair scores ignore that a pair's contrastive loss depends on the rest of its
batch. Joint selection (Evans et al. 2024, arXiv 2406.17711) builds the
sub-batch in `n_chunks` chunks; each chunk is drawn (Gumbel-top-k without
replacement, or top-k) by *conditional learnability*: how much adding pair `j`
to the pairs `S` chosen so far raises the sub-batch's contrastive loss under the
actor (or learner) minus how much it raises it under the reference,

    score_j = sum_M sign_M * (L_M(S + {j}) - L_M(S)),

with sign +1 for the learner and the actor and -1 for the reference (the models
whose outputs the policy's scoring computed, so `learnability` gives
actor - reference and `rho_loss` learner - reference). One loss throughout, in
one unit: `L_M(S)` is the SigLIP loss of the sub-batch `S` under model `M`
(its learned logit scale `t` and bias `b`), summed over the pairs of `S`
(the sum of `losses.siglip_per_pair` over `S` alone). Writing `l_ij = t x_i.y_j + b`,

    L_M(S + {j}) - L_M(S) = softplus(-l_jj) + sum_{s in S} softplus(l_js) + softplus(l_sj):

the pair's own (positive) term, plus the negative terms between `j` and the
chosen pairs, which include what `j` adds to the loss of every pair already
chosen (its row and column gain `j` as a negative). The sum, not the mean: a
mean would divide all scores of a chunk by `|S| + 1`, so the temperature would
sharpen from chunk to chunk. With `S` empty the score is the per-pair SigLIP
learnability of `j` alone, so `n_chunks=1` is per-pair selection on that loss.
The policy's own per-pair scores (whatever `ClipTask.example_loss` is) are not
used: joint selection always scores with SigLIP terms.

Within a chunk the scores are conditioned on the chunks before it (JEST draws a
chunk at a time). Everything has static shapes (chunks unrolled in Python,
masks instead of boolean indexing), so it compiles under XLA.

Example:

```python
from active_keras.selection import joint, selectors

selectors.get("joint")  # Gumbel-top-k per chunk; chunks: gin `make_joint.n_chunks` (4).
model = ActiveLearner(learner, reference, example_loss=losses.negative_logit,
                      selection=joint.make_joint(n_chunks=8))
```
"""

import gin
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


def siglip_terms(y_pred):
    """`(own [B], cross [B, B])` SigLIP terms of one model's packed outputs.

    `own[j] = softplus(-l_jj)` is pair `j`'s positive term and
    `cross[j, s] = softplus(l_js) + softplus(l_sj)` (zero on the diagonal) the two
    negative terms between pairs `j` and `s`, with `l_ij = t x_i.y_j + b`.
    """
    parts = clip_outputs.unpack(y_pred)
    sim = tf.matmul(parts["image"], parts["text"], transpose_b=True)
    logits = parts["logit_scale"] * sim + parts["logit_bias"]
    negative = tf.math.softplus(logits)  # -log sigmoid(-l): the term of a non-matching pair.
    cross = tf.linalg.set_diag(negative + tf.transpose(negative), tf.zeros_like(sim[0]))
    return tf.math.softplus(-tf.linalg.diag_part(logits)), cross


def conditional_learnability(outputs):
    """`f(chosen) -> [B]`: each pair's conditional learnability given the chosen pairs.

    Args:
        outputs: Packed outputs over the super-batch by model name (`"learner"`,
            `"actor"`, `"reference"`), as scoring computed them.

    Returns:
        A function of a float `[B]` 0/1 mask of the chosen pairs that returns
        `sum_M sign_M * (L_M(S + {j}) - L_M(S))` for every pair `j`.
    """
    own, cross = 0.0, 0.0
    for name, y_pred in sorted(outputs.items()):
        own_m, cross_m = siglip_terms(y_pred)
        own, cross = own + _SIGNS[name] * own_m, cross + _SIGNS[name] * cross_m
    return lambda chosen: own + tf.linalg.matvec(cross, chosen)


@gin.configurable
def make_joint(n_chunks=4, sample=True):
    """Returns a joint selector `fn(scores, k, temperature, seed, context) -> [k]` indices.

    Args:
        n_chunks: Number of chunks the sub-batch is built in (at most `k`);
            settable with gin (`make_joint.n_chunks = 8`) for the registered
            `"joint"` and `"joint_topk"` selections.
        sample: Gumbel-top-k sampling (`selectors.sample`) from
            `softmax(score / temperature)` per chunk; False takes each chunk's
            top-k deterministically (`selectors.topk`).
    """
    draw = selectors.sample if sample else selectors.topk

    def joint(scores, k, temperature=1.0, seed=None, context=None):
        if context is None:
            raise ValueError("Joint selection needs the scoring context (model outputs).")
        size = scores.shape[0]
        if size is None:
            raise ValueError("Joint selection needs a static super-batch size.")
        conditional = conditional_learnability(context["outputs"])
        chosen = tf.zeros([size], tf.float32)  # 1.0 where already selected.
        picks = []
        for n in chunk_sizes(k, n_chunks):
            # Already chosen pairs can never be drawn again.
            masked = tf.where(chosen > 0, tf.constant(_NEG, tf.float32), conditional(chosen))
            index = draw(masked, n, temperature=temperature, seed=seed)
            picks.append(index)
            chosen = chosen + tf.reduce_sum(tf.one_hot(index, size, dtype=tf.float32), axis=0)
        return tf.concat(picks, axis=0)

    joint.uses_context = True
    joint.n_chunks = n_chunks
    return joint


class _Configured:
    """A registered joint selection: built with gin's `make_joint` settings when called."""

    uses_context = True

    def __init__(self, sample):
        self.sample = sample

    def __call__(self, scores, k, temperature=1.0, seed=None, context=None):
        select = make_joint(sample=self.sample)
        return select(scores, k, temperature=temperature, seed=seed, context=context)


selectors.register("joint", _Configured(sample=True))
selectors.register("joint_topk", _Configured(sample=False))
