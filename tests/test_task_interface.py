"""The task interface (`tasks.base.Task`), the primary-metric names and the image-text id scheme."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ast
import glob

import numpy as np
import tensorflow as tf

from active_keras.data import openclipart
from active_keras.tasks import base
from active_keras.tasks.classification import ClassificationTask
from active_keras.tasks.clip_task import ClipTask

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "active_keras")


class TaskInterfaceTest(tf.test.TestCase):
    def test_both_tasks_implement_it(self):
        for task in (ClassificationTask, ClipTask):
            self.assertTrue(issubclass(task, base.Task))
            self.assertFalse(task.__abstractmethods__, task)
            self.assertIn(task.primary_metric, base.PRIMARY_METRICS)
        self.assertEqual(
            (ClassificationTask.primary_metric, ClipTask.primary_metric), base.PRIMARY_METRICS
        )

    def test_a_task_missing_a_method_cannot_be_made(self):
        class Partial(base.Task):
            def dataset(self, split, batch_size, **kwargs):
                raise NotImplementedError

        with self.assertRaisesRegex(TypeError, "abstract methods.*build_learner"):
            Partial()

    def test_use_model_dir_does_nothing_by_default(self):
        task = ClassificationTask.__new__(ClassificationTask)
        self.assertIsNone(task.use_model_dir(self.get_temp_dir()))
        self.assertEqual(os.listdir(self.get_temp_dir()), [])

    def test_primary_metric_of_a_curve_point(self):
        self.assertEqual(base.primary_metric({"step": 0, "test_accuracy": 0.5}), "test_accuracy")
        clip_point = {"zero_shot_accuracy": 0.1, "image_to_text_recall@5": 0.2, "test_loss": 1.0}
        self.assertEqual(base.primary_metric(clip_point), "image_to_text_recall@5")
        self.assertEqual(ClipTask.primary_metric, "image_to_text_recall@5")
        self.assertIsNone(base.primary_metric({"step": 0}))

    def test_no_duck_typing_of_tasks_left(self):
        # The interface is declared: nothing asks a task what it has, or calls it to find out.
        for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "hasattr":
                    self.assertNotEqual(ast.unparse(node.args[0]), "task", path)
                if isinstance(node, ast.Try):
                    caught = " ".join(ast.unparse(h.type) for h in node.handlers if h.type)
                    tried = "\n".join(ast.unparse(n) for n in node.body)
                    self.assertFalse("TypeError" in caught and "task." in tried, (path, tried))


class ExampleIdTest(tf.test.TestCase):
    def test_ids_round_trip_through_split_and_index(self):
        for split in openclipart.SPLITS:
            ids = openclipart.example_ids(split, 5)
            self.assertEqual(ids.dtype, np.int64)
            splits, index = openclipart.split_and_index(ids)
            self.assertEqual(splits, [split] * 5)
            self.assertAllEqual(index, np.arange(5))
        self.assertEqual(
            len(set(np.concatenate([openclipart.example_ids(s, 3) for s in openclipart.SPLITS]))), 9
        )

    def test_a_split_too_large_for_the_scheme_is_refused(self):
        with self.assertRaisesRegex(ValueError, "fewer than 1000000"):
            openclipart.example_ids("train", openclipart.ID_STRIDE)


if __name__ == "__main__":
    tf.test.main()
