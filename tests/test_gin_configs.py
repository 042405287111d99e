"""Every shipped .gin file parses and binds what it says (dopamine / t5x style)."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob

import gin
import tensorflow as tf

from active_keras import main as main_lib
from active_keras import train
from active_keras.data.classification import ImageClassificationData
from active_keras.selection import policies
from active_keras.tasks.classification import ClassificationTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "gin", "*.gin")))


class GinConfigTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        gin.clear_config()
        self.cwd = os.getcwd()
        os.chdir(ROOT)

    def tearDown(self):
        gin.clear_config()
        os.chdir(self.cwd)
        super().tearDown()

    def test_every_shipped_file_parses(self):
        self.assertTrue(GIN_FILES)
        for path in GIN_FILES:
            with self.subTest(path=os.path.basename(path)):
                main_lib.parse_config([path], [])

    def test_classact_and_uniform_bind_the_policies(self):
        main_lib.parse_config(["gin/classact.gin"], [])
        self.assertEqual(gin.query_parameter("ActiveLearner.policy"), "learnability")
        self.assertEqual(gin.query_parameter("ActiveLearner.selection"), "sample")
        main_lib.parse_config(["gin/classact.gin", "gin/uniform.gin"], [])
        self.assertEqual(gin.query_parameter("ActiveLearner.policy"), "uniform")
        main_lib.parse_config(["gin/reference.gin"], [])
        self.assertEqual(gin.query_parameter("run.mode"), "reference")

    def test_the_gin_factory_takes_the_class_defaults(self):
        import inspect

        from active_keras import ActiveLearner

        factory = inspect.signature(gin.get_configurable(train.build_active_learner)).parameters
        defaults = inspect.signature(ActiveLearner.__init__).parameters
        # The gin-bound knobs (`run.*` passes the sizes and the seed; the temperature schedule
        # is the factory's own).
        for name in set(train.SELECTION_KNOBS) - {"final_temperature"} | {"jit_scoring"}:
            with self.subTest(name=name):
                self.assertEqual(factory[name].default, defaults[name].default)

    def test_the_clis_choices_are_bindings_of_the_shipped_configs(self):
        # Sampling and global selection across replicas, as in the paper's runs: bound in the
        # shipped files, not hidden in the factory's defaults.
        for path in ("gin/classact.gin", "gin/activeclip.gin"):
            main_lib.parse_config([path], [])
            self.assertEqual(gin.query_parameter("ActiveLearner.selection"), "sample")
            self.assertEqual(gin.query_parameter("ActiveLearner.selection_scope"), "global")
        for path in ("gin/uniform.gin", "gin/activeclip_uniform.gin"):
            main_lib.parse_config([path], [])
            self.assertEqual(gin.query_parameter("ActiveLearner.selection_scope"), "global")

    def test_a_selection_knob_bound_on_run_names_its_new_binding(self):
        with self.assertRaisesRegex(
            main_lib.ConfigError,
            r"(?s)Bad gin binding 'run.keep_fraction = 0.25'.*run.keep_fraction is now "
            r"ActiveLearner.keep_fraction",
        ):
            main_lib.parse_config(["gin/classact.gin"], ["run.keep_fraction = 0.25"])
        # Not a moved one: gin's own message alone.
        with self.assertRaisesRegex(main_lib.ConfigError, r"ActiveLearner.*super_batch_size"):
            main_lib.parse_config(["gin/classact.gin"], ["ActiveLearner.super_batch_size = 64"])

    def test_active_learner_bindings_build_the_models_the_policy_needs(self):
        task = ClassificationTask(data=ImageClassificationData("digits", heldout_size=300))
        missing = os.path.join(self.get_temp_dir(), "none.keras")  # Never loaded below.
        cases = [
            ("uniform", False, None, None),
            ("learnability", True, "reference", "actor"),
        ]
        for policy, online, reference, actor in cases:
            with self.subTest(policy=policy, online=online):
                main_lib.parse_config(
                    ["gin/classact.gin"],
                    [
                        f"ActiveLearner.policy = '{policy}'",
                        f"ActiveLearner.online_reference = {online}",
                        "ActiveLearner.keep_fraction = 0.25",
                    ],
                )
                model = train.build_active_learner(task, missing, super_batch_size=32, seed=0)
                self.assertIs(model.policy, policies.get(policy))  # Resolved once, then kept.
                self.assertEqual(model.model_set, policies.get(policy).models(online))
                self.assertEqual(model.reference and model.reference.name, reference)
                self.assertEqual(model.actor and model.actor.name, actor)
                self.assertEqual(model.sub_batch_size(32), 8)
                self.assertEqual(model.selection, "sample")  # From gin/classact.gin.
                self.assertEqual(model.selection_scope, "global")  # The run's default.

    def test_final_temperature_moves_the_temperature_geometrically_over_the_run(self):
        task = ClassificationTask(data=ImageClassificationData("digits", heldout_size=300))
        missing = os.path.join(self.get_temp_dir(), "none.keras")  # Never loaded below.
        main_lib.parse_config(
            ["gin/activeclip.gin"],
            ["ActiveLearner.temperature = 1.0", "ActiveLearner.final_temperature = 16.0"],
        )
        model = train.build_active_learner(
            task, missing, super_batch_size=32, seed=0, num_steps=100
        )
        schedule = model.temperature_schedule
        self.assertAllClose([float(schedule(s)) for s in (0, 50, 100)], [1.0, 4.0, 16.0])
        main_lib.parse_config(["gin/activeclip.gin"], ["ActiveLearner.final_temperature = 2.0"])
        with self.assertRaisesRegex(ValueError, "final_temperature needs run.num_steps"):
            train.build_active_learner(task, missing, super_batch_size=32, seed=0)

    def test_local_switch_shrinks_the_run(self):
        main_lib.parse_config(["gin/classact.gin"], [], local=True)
        self.assertLessEqual(gin.query_parameter("run.num_steps"), 50)


if __name__ == "__main__":
    tf.test.main()
