import numpy as np
import pytest
import tensorflow as tf

from active_keras.selection import policies

LOSSES = {
    "learner": tf.constant([1.0, 2.0, 0.5]),
    "actor": tf.constant([0.9, 3.0, 0.1]),
    "reference": tf.constant([0.2, 2.5, 0.3]),
}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hard_learner", [1.0, 2.0, 0.5]),
        ("easy_reference", [-0.2, -2.5, -0.3]),
        ("learnability", [0.7, 0.5, -0.2]),
        ("rho_loss", [0.8, -0.5, 0.2]),
        ("uniform", [0.0, 0.0, 0.0]),
    ],
)
def test_policy_scores(name, expected):
    policy = policies.get(name)
    scores = policy({k: LOSSES[k] for k in policy.requires}, 3)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-6)
    assert scores.dtype == tf.float32


def test_requirements_are_what_each_policy_reads():
    assert policies.get("uniform").requires == ()
    assert policies.get("learnability").requires == ("actor", "reference")
    assert policies.get("rho_loss").requires == ("learner", "reference")


def test_missing_loss_is_reported():
    with pytest.raises(ValueError, match="needs losses for \\['reference'\\]"):
        policies.get("learnability")({"actor": LOSSES["actor"]}, 3)


def test_unknown_policy_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match="Unknown policy 'learnabilty'.*learnability"):
        policies.get("learnabilty")


def test_users_can_register_a_policy():
    @policies.register("test_actor_only", requires=("actor",))
    def actor_only(losses):
        return 2.0 * losses["actor"]

    assert "test_actor_only" in policies.names()
    scores = policies.get("test_actor_only")({"actor": LOSSES["actor"]}, 3)
    np.testing.assert_allclose(scores.numpy(), [1.8, 6.0, 0.2], rtol=1e-6)


def test_register_rejects_unknown_models():
    with pytest.raises(ValueError, match="Unknown models \\['teacher'\\]"):
        policies.register("bad", requires=("teacher",))
