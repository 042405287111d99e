"""Scoring policies: each turns per-example losses into per-example scores.

A policy is a short function of a dict of per-example losses (keys `"learner"`,
`"actor"`, `"reference"`, each a float32 vector over the super-batch) that
returns one float32 score per example; higher scores are selected first. The
registry records which losses a policy needs, so the train step runs only the
forward passes it must.

Example:

```python
from active_keras.selection import policies

@policies.register("actor_minus_half_reference", requires=("actor", "reference"))
def actor_minus_half_reference(losses):
    return losses["actor"] - 0.5 * losses["reference"]

policy = policies.get("actor_minus_half_reference")
```
"""

import dataclasses
from collections.abc import Callable, Mapping

import tensorflow as tf

MODELS = ("learner", "actor", "reference")


@dataclasses.dataclass(frozen=True)
class ModelSet:
    """Which models a run has besides the learner: decided by `Policy.models` alone.

    The run builds these (`train.build_active_learner`), `ActiveLearner`
    checks and completes them, the FLOP ledger counts them
    (`ActiveLearner.step_roles`) and `curate` scores with them.

    Attributes:
        reference: A reference model exists (frozen, or trained online).
        actor: An actor is co-trained on the selected sub-batches.
        online_reference: The reference trains on every super-batch (ClassAct-Online).
    """

    reference: bool
    actor: bool
    online_reference: bool = False

    @property
    def frozen_reference(self):
        """A frozen reference whose per-example losses the policy reads."""
        return self.reference and not self.online_reference


@dataclasses.dataclass(frozen=True)
class Policy:
    """A registered scoring policy.

    Attributes:
        name: Registry name.
        fn: `fn(losses) -> scores`, losses a mapping from model name to a
            per-example loss vector.
        requires: Models whose per-example losses over the super-batch the
            policy reads.
    """

    name: str
    fn: Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
    requires: tuple[str, ...]

    def models(self, online_reference=False):
        """The `ModelSet` of a run of this policy (an online reference is always a reference)."""
        return ModelSet(
            reference="reference" in self.requires or bool(online_reference),
            actor="actor" in self.requires,
            online_reference=bool(online_reference),
        )

    def __call__(self, losses, batch_size):
        """Scores a super-batch of `batch_size` examples; `None` from `fn` means all equal."""
        missing = [m for m in self.requires if m not in losses]
        if missing:
            raise ValueError(f"Policy {self.name!r} needs losses for {missing}.")
        scores = self.fn(losses)
        if scores is None:
            return tf.zeros([batch_size], tf.float32)
        return tf.cast(scores, tf.float32)


_REGISTRY: dict[str, Policy] = {}


def register(name, requires=()):
    """Decorator that registers `fn` as policy `name` needing losses `requires`."""
    unknown = [m for m in requires if m not in MODELS]
    if unknown:
        raise ValueError(f"Unknown models {unknown} in requires; choose from {MODELS}.")

    def decorator(fn):
        _REGISTRY[name] = Policy(name=name, fn=fn, requires=tuple(requires))
        return fn

    return decorator


def get(policy):
    """Returns the `Policy` registered as `policy` (a name or a `Policy`)."""
    if isinstance(policy, Policy):
        return policy
    if policy not in _REGISTRY:
        raise ValueError(f"Unknown policy {policy!r}; registered policies: {sorted(_REGISTRY)}.")
    return _REGISTRY[policy]


def names():
    return sorted(_REGISTRY)


@register("uniform")
def uniform(losses):
    # All scores equal: top-k keeps the first b of a shuffled super-batch and
    # sampling draws b uniformly at random, both a uniform subsample.
    del losses
    return None  # Policy.__call__ turns this into zeros of the super-batch size.


@register("hard_learner", requires=("learner",))
def hard_learner(losses):
    return losses["learner"]


@register("easy_reference", requires=("reference",))
def easy_reference(losses):
    return -losses["reference"]


@register("learnability", requires=("actor", "reference"))
def learnability(losses):
    return losses["actor"] - losses["reference"]


@register("rho_loss", requires=("learner", "reference"))
def rho_loss(losses):
    return losses["learner"] - losses["reference"]
