"""Selection policies: their scores, what they read, their errors, user registration."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from active_keras.selection import policies

LOSSES = {
    "learner": tf.constant([1.0, 2.0, 0.5]),
    "actor": tf.constant([0.9, 3.0, 0.1]),
    "reference": tf.constant([0.2, 2.5, 0.3]),
}


class PoliciesTest(parameterized.TestCase, tf.test.TestCase):
    @parameterized.named_parameters(
        ("hard_learner", "hard_learner", [1.0, 2.0, 0.5]),
        ("easy_reference", "easy_reference", [-0.2, -2.5, -0.3]),
        ("learnability", "learnability", [0.7, 0.5, -0.2]),
        ("rho_loss", "rho_loss", [0.8, -0.5, 0.2]),
        ("uniform", "uniform", [0.0, 0.0, 0.0]),
    )
    def test_policy_scores(self, name, expected):
        policy = policies.get(name)
        scores = policy({k: LOSSES[k] for k in policy.requires}, 3)
        np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-6)
        self.assertEqual(scores.dtype, tf.float32)

    @parameterized.named_parameters(
        ("uniform", "uniform", False, (False, False, False)),
        ("hard_learner", "hard_learner", False, (False, False, False)),
        ("easy_reference", "easy_reference", False, (True, False, True)),
        ("learnability", "learnability", False, (True, True, True)),
        ("learnability_online", "learnability", True, (True, True, False)),
        ("uniform_online", "uniform", True, (True, False, False)),
    )
    def test_the_policy_decides_which_models_exist(self, name, online, expected):
        models = policies.get(name).models(online_reference=online)
        self.assertEqual((models.reference, models.actor, models.frozen_reference), expected)
        self.assertEqual(models.online_reference, online)

    def test_requirements_are_what_each_policy_reads(self):
        self.assertEqual(policies.get("uniform").requires, ())
        self.assertEqual(policies.get("learnability").requires, ("actor", "reference"))
        self.assertEqual(policies.get("rho_loss").requires, ("learner", "reference"))

    def test_missing_loss_is_reported(self):
        with self.assertRaisesRegex(ValueError, "needs losses for \\['reference'\\]"):
            policies.get("learnability")({"actor": LOSSES["actor"]}, 3)

    def test_unknown_policy_names_the_value_and_the_choices(self):
        with self.assertRaisesRegex(ValueError, "Unknown policy 'learnabilty'.*learnability"):
            policies.get("learnabilty")

    def test_users_can_register_a_policy(self):
        @policies.register("test_actor_only", requires=("actor",))
        def actor_only(losses):
            return 2.0 * losses["actor"]

        self.assertIn("test_actor_only", policies.names())
        scores = policies.get("test_actor_only")({"actor": LOSSES["actor"]}, 3)
        np.testing.assert_allclose(scores.numpy(), [1.8, 6.0, 0.2], rtol=1e-6)

    def test_register_rejects_unknown_models(self):
        with self.assertRaisesRegex(ValueError, "Unknown models \\['teacher'\\]"):
            policies.register("bad", requires=("teacher",))


if __name__ == "__main__":
    tf.test.main()
