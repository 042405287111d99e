"""Every shipped .gin file parses and binds what it says (dopamine / t5x style)."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob

import gin
import tensorflow as tf

from active_keras import main as main_lib

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
        self.assertEqual(gin.query_parameter("run.policy"), "learnability")
        self.assertEqual(gin.query_parameter("run.selection"), "sample")
        main_lib.parse_config(["gin/classact.gin", "gin/uniform.gin"], [])
        self.assertEqual(gin.query_parameter("run.policy"), "uniform")
        main_lib.parse_config(["gin/reference.gin"], [])
        self.assertEqual(gin.query_parameter("run.mode"), "reference")

    def test_local_switch_shrinks_the_run(self):
        main_lib.parse_config(["gin/classact.gin"], [], local=True)
        self.assertLessEqual(gin.query_parameter("run.num_steps"), 50)


if __name__ == "__main__":
    tf.test.main()
