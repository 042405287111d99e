"""tools/migrate_hashes.py: a stored hash moves only when an old configuration reproduces it."""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf

from tools import benchmark, migrate_hashes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class MigrateHashesTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.cwd = os.getcwd()
        os.chdir(ROOT)  # The gin files include each other by repository-relative paths.
        reference = "benchmarks/runs/classact/_reference/reference.keras"
        self.run = benchmark.LADDER_SUITES["classact"].make_runs(False, reference)[0]

    def tearDown(self):
        os.chdir(self.cwd)
        super().tearDown()

    def test_a_run_of_before_a_change_moves_and_keeps_its_old_hash(self):
        now, earlier = migrate_hashes.chain(self.run)
        names = [name for name, _ in earlier]
        self.assertEqual(names, ["defaults_move", "cache_move"])  # Newest first.
        before = dict(earlier)["defaults_move"]
        self.assertNotEqual(before, now)
        info = {"config_hash": before}
        self.assertEqual(migrate_hashes.migrate(self.run, info), "migrated")
        self.assertEqual(info["config_hash"], now)
        self.assertEqual(info["config_hash_before_defaults_move"], before)
        self.assertEqual(migrate_hashes.migrate(self.run, dict(info)), "same")

    def test_a_hash_no_old_configuration_gives_is_left_alone(self):
        info = {"config_hash": "0123456789abcdef"}
        self.assertEqual(migrate_hashes.migrate(self.run, info), "unexplained")
        self.assertEqual(info, {"config_hash": "0123456789abcdef"})

    def test_the_current_digest_is_the_benchmarks(self):
        now, _ = migrate_hashes.chain(self.run)
        self.assertEqual(now, benchmark.config_hash(self.run))


if __name__ == "__main__":
    tf.test.main()
