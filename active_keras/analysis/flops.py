"""FLOP accounting: forward FLOPs measured from the TF graph, and a per-step ledger.

Forward FLOPs per example are counted by TensorFlow's profiler on the graph of
the model's forward pass (batch of one), not typed in by hand. The profiler has
no rule for `Einsum`, which Keras' `MultiHeadAttention` computes the attention
products (`QK^T` and attention times `V`) with: `einsum_flops` counts those ops
from their equation and static shapes (`2 *` the product of every index's size,
a multiply and an add per term) and `forward_flops` adds them. The ledger then
applies METHOD.md's cost model: a training step costs about three forward
passes, scoring one.

Example:

```python
from active_keras.analysis import flops

f_learner = flops.forward_flops(learner)
ledger = flops.FlopLedger.for_learner(active_learner, super_batch_size=128)
ledger.totals(steps=1000)["total"]
```
"""

import dataclasses

import numpy as np
import tensorflow as tf


def _input_specs(model):
    """Batch-of-one `TensorSpec`s of a model's inputs, keeping names and dtypes.

    Multi-input models (the two-tower CLIP models take `{"image", "tokens"}`)
    get a dict keyed by input name, as their call expects; int inputs stay int.
    """
    inputs = model.inputs
    if not inputs:
        raise ValueError(f"Model {model.name!r} is not built: give input_shape.")
    specs = {
        t.name: tf.TensorSpec((1, *t.shape[1:]), tf.as_dtype(t.dtype or "float32"), name=t.name)
        for t in inputs
    }
    if len(specs) == 1:
        return next(iter(specs.values()))
    if isinstance(model.input, dict):
        return specs
    return [specs[t.name] for t in inputs]


def forward_flops(model, input_shape=None):
    """Forward-pass FLOPs of `model` for one example, from TF's graph profiler.

    Args:
        model: A built Keras model. A single float input can be described by
            `input_shape`; without it every input (also a dict of several, of
            any dtype) is taken from `model.inputs`.
        input_shape: Per-example shape of a single float input.
    """
    if input_shape is None:
        spec = _input_specs(model)
    else:
        spec = tf.TensorSpec((1, *input_shape), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    if profile.total_float_ops <= 0:
        raise ValueError(f"The profiler found no floating-point ops in {model.name!r}.")
    return int(profile.total_float_ops) + einsum_flops(graph)


def einsum_flops(graph):
    """FLOPs of the `Einsum` ops of `graph` (which TF's profiler counts as zero).

    An einsum over indices of sizes `n_1, ..., n_k` (inputs' and output's
    together) does `prod(n_i)` multiply-adds: `2 * prod(n_i)` FLOPs.
    """
    total = 0
    for op in graph.get_operations():
        if op.type != "Einsum":
            continue
        equation = op.get_attr("equation").decode()
        operands = equation.split("->")[0].split(",")
        sizes = {}
        for letters, tensor in zip(operands, op.inputs, strict=True):
            shape = tensor.shape.as_list()
            if "." in letters or len(letters) != len(shape) or None in shape:
                raise ValueError(f"Cannot count einsum {equation!r} over shapes {shape}.")
            sizes.update(zip(letters, shape, strict=True))
        total += 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
    return total


@dataclasses.dataclass(frozen=True)
class FlopLedger:
    """Training FLOPs per step for each model, following METHOD.md.

    A uniform step costs `3 F_L b`. Scoring adds one forward pass over the
    super-batch `B` for each model the policy reads (`F_L B` for the learner,
    `F_A B` for actor and reference); the actor trains on `b` (`3 F_A b`); an
    online reference also trains on all of `B` (`3 F_R B`). Precomputed
    reference losses replace the reference's pass over every super-batch with
    one pass over the training set before the run (`F_A N`), charged once.

    Attributes:
        flops: Forward FLOPs per example of each model present.
        super_batch_size: `B`.
        sub_batch_size: `b`.
        scored_by: Models run over the whole super-batch to score it.
        trained_on_sub_batch: Models updated on the `b` selected examples.
        trained_on_super_batch: Models updated on all `B` examples.
        one_time: FLOPs spent once, before the first step, per model (the
            precomputing pass of reference losses).
    """

    flops: dict
    super_batch_size: int
    sub_batch_size: int
    scored_by: tuple = ()
    trained_on_sub_batch: tuple = ("learner",)
    trained_on_super_batch: tuple = ()
    one_time: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def for_learner(cls, model, super_batch_size):
        """The ledger of an `ActiveLearner` (FLOPs measured from its models)."""
        # One float input: every model is measured on the learner's input shape.
        # Several inputs (CLIP's image and tokens): each model's own input specs.
        models = model.models()
        single = len(models["learner"].inputs) == 1
        input_shape = tuple(models["learner"].input_shape[1:]) if single else None
        flops = {name: forward_flops(m, input_shape) for name, m in models.items()}
        roles = model.step_roles()
        return cls(
            flops=flops,
            super_batch_size=super_batch_size,
            sub_batch_size=model.sub_batch_size(super_batch_size),
            scored_by=roles["scored_by"],
            # Looked up, not computed: one forward pass over each scored example, once.
            one_time={name: flops[name] * n for name, n in roles["looked_up"].items()},
            trained_on_sub_batch=roles["trained_on_sub_batch"],
            trained_on_super_batch=roles["trained_on_super_batch"],
        )

    def per_step(self):
        """FLOPs of one step for each model."""
        cost = {name: 0 for name in self.flops}
        for name in self.scored_by:
            cost[name] += self.flops[name] * self.super_batch_size
        for name in self.trained_on_sub_batch:
            cost[name] += 3 * self.flops[name] * self.sub_batch_size
        for name in self.trained_on_super_batch:
            cost[name] += 3 * self.flops[name] * self.super_batch_size
        return cost

    def totals(self, steps):
        """Cumulative FLOPs after `steps` steps (one-time costs included): per model, "total"."""
        out = {
            f"{name}_flops": int(v) * int(steps) + int(self.one_time.get(name, 0))
            for name, v in self.per_step().items()
        }
        out["total_flops"] = sum(out.values())
        return out

    def overhead(self):
        """Predicted cost of a step relative to a uniform step (`3 F_L b`)."""
        return sum(self.per_step().values()) / (3 * self.flops["learner"] * self.sub_batch_size)
