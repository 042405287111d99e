"""Kill it anywhere, lose nothing: a CLI run killed inside each kind of write ends as if whole.

One lineage of processes runs the same command (`--compare_with`, the replay
record and the selection log on, the reference trained by the run): each is
paused at a write site by `active_keras.files.pause_point`
(`ACTIVE_KERAS_PAUSE_AT=site@n`), killed there with SIGKILL, and the next one
resumes and runs to the next site. A last one runs to the end. Its final
weights (learner and reference), `metrics.json` (the baseline's too), replay
record and selection log must equal those of an uninterrupted run.

The kill points land in every kind of write a run makes: a checkpoint of the
reference's pre-training and of the run, the reference's and the learner's
`.keras` file before its rename, `operative_config.gin`, `metrics.json`, a
replay chunk, a half-written line of `records.jsonl`, an example file of the
selection log and the removal of an old one, the report, and the baseline's
writes.
"""

import os
import sys

# `python tests/<file>.py` puts tests/ first on sys.path; the tests import `tests.*`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import glob
import json
import shutil
import signal
import subprocess
import tempfile
import time
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

from active_keras import files, train
from active_keras.analysis import selection_log
from active_keras.data import curated
from active_keras.text import tokenizer
from active_keras.training import replay
from tests.cli_helpers import ROOT, TINY, cli_command, env, tiny_reference
from tests.conftest import SMOKE

# 12 steps evaluated every 6, checkpointed and logged every 3: kills fall both on an
# evaluation and in the middle of an interval; the reference checkpoints every 5 of its 10.
RUN = [b for b in TINY if not b.startswith(("run.num_steps", "run.eval_every"))] + [
    "run.num_steps = 12",
    "run.eval_every = 6",
    "run.checkpoint_every = 3",
    "run.selection_log_every = 3",
    "train_reference.checkpoint_every = 5",
]
ARGS = ["--gin_file=gin/classact.gin", "--compare_with=gin/uniform.gin"]

# `site@n`: the n-th time this process reaches the site. Each process resumes where the last
# one was killed, so the order decides where each point lands (noted beside it).
KILL_POINTS = [
    "checkpoint@1",  # The reference's pre-training, before its step-5 checkpoint.
    "checkpoint@2",  # Its step-10 checkpoint (step 5 saved).
    "reference@1",  # reference.keras written, not yet renamed into place.
    "operative_config.gin@1",  # The run starts.
    "metrics.json@1",  # The step-0 point.
    "records.jsonl@1",  # A half-written selection record (step 3).
    "replay_chunk@1",  # The replay rows of steps 0-2, before the step-3 checkpoint.
    "checkpoint@2",  # Before the step-6 checkpoint: resumed from step 3, mid-interval.
    "examples@2",  # The selection log's example file of step 9.
    "examples_cleanup@1",  # Removing the oldest example file (step 12).
    "learner.keras@1",  # The learner written, not yet renamed into place.
    "index.html@1",  # The run's report.
    "metrics.json@2",  # The baseline's step-0 point.
    "checkpoint@1",  # The baseline's step-3 checkpoint.
    "index.html@3",  # The comparison report, once both runs are done.
]
# The smoke configuration keeps one point of each kind of write (the baseline's files are
# those of the run, written by the same code).
SMOKE_POINTS = [KILL_POINTS[i] for i in (1, 2, 3, 5, 6, 7, 8, 9, 10, 11)]
# A curation (550 of 1,100 digits kept, in shards of 200) killed while writing its scores, a
# shard, after unpublishing the old curation, while moving the new files in, and before the
# manifest's rename.
CURATE_POINTS = [
    "scores.npz@1",
    "curated_shard@2",
    "curate_unpublished@1",
    "curate_move@2",
    "manifest.json@1",
]
TIMEOUT = 300


def _command(folder):
    return cli_command(folder, *ARGS, f"--model_dir={os.path.join(folder, 'run')}", bindings=RUN)


def _start(command, environ, log):
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,  # Its own group: the kill reaches all of it.
        )


def _tail(log):
    with open(log) as f:
        return f.read()[-3000:]


def _run_to(command, folder, point, index):
    """Runs `command` until it pauses at `point`, then kills it with SIGKILL."""
    marker = os.path.join(folder, "paused")
    log = os.path.join(folder, f"kill{index:02d}.log")
    proc = _start(command, env(**{files.PAUSE_AT: point, files.PAUSE_FILE: marker}), log)
    deadline = time.time() + TIMEOUT
    while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise AssertionError(
            f"kill point {index} ({point}) was never reached: the run exited with "
            f"{proc.returncode}.\n{_tail(log)}"
        )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if not os.path.exists(marker):
        raise AssertionError(f"kill point {index} ({point}) not reached in {TIMEOUT} s")
    os.remove(marker)


def _finish(command, folder):
    log = os.path.join(folder, "final.log")
    return _start(command, env(), log), log


def _wait(proc, log):
    if proc.wait(timeout=TIMEOUT) != 0:
        raise AssertionError(f"exit {proc.returncode}\n{_tail(log)}")


def _json(path):
    with open(path) as f:
        return json.load(f)


def _weights(path):
    return keras.models.load_model(path, compile=False).get_weights()


def _examples(log_dir):
    out = {}
    for path in selection_log.example_files(log_dir):
        with np.load(path) as data:
            out[os.path.basename(path)] = {k: data[k] for k in data.files}
    return out


class SafeWritesTest(tf.test.TestCase):
    """The pieces the kill test relies on, one by one."""

    def test_atomic_file_leaves_the_old_file_when_the_write_fails(self):
        path = os.path.join(self.get_temp_dir(), "metrics.json")
        with files.atomic_file(path) as f:
            f.write("old")
        with self.assertRaises(RuntimeError), files.atomic_file(path) as f:
            f.write("half")
            raise RuntimeError("killed")
        with open(path) as f:
            self.assertEqual(f.read(), "old")
        self.assertEqual(os.listdir(self.get_temp_dir()), ["metrics.json"])

    def test_a_temporary_replay_chunk_is_no_chunk(self):
        folder = self.get_temp_dir()
        replay._save(os.path.join(folder, "steps-000000000.npy"), np.zeros([3, 2], np.int32))
        # What a kill between writing and renaming leaves: the temporary name of `atomic_file`.
        with open(os.path.join(folder, ".steps-000000003.npy.x1y2.tmp"), "wb") as f:
            np.save(f, np.ones([3, 2], np.int32))
        with open(os.path.join(folder, "steps-000000003.npy.tmp4242.npy"), "wb") as f:
            np.save(f, np.ones([3, 2], np.int32))  # The old scheme's name: not a chunk either.
        self.assertEqual(replay.load_selected_ids(folder).shape, (3, 2))

    def test_a_torn_record_line_is_skipped_and_repaired(self):
        log_dir = self.get_temp_dir()
        with open(os.path.join(log_dir, selection_log.RECORDS), "w") as f:
            f.write('{"step": 3}\n{"step": 6}\n{"step": 9, "sco')
        self.assertEqual([r["step"] for r in selection_log.read_records(log_dir)], [3, 6])
        selection_log._keep_records_up_to(log_dir, 3)
        with open(os.path.join(log_dir, selection_log.RECORDS)) as f:
            self.assertEqual(f.read(), '{"step": 3}\n')

    def test_cache_folders_of_others_or_open_to_anyone_are_refused(self):
        root = os.path.join(self.get_temp_dir(), "xdg")
        with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": root}):
            folder = files.cache_dir("openclipart")
            self.assertEqual(folder, os.path.join(root, "active_keras", "openclipart"))
            self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)
            os.chmod(folder, 0o777)
            with self.assertRaisesRegex(files.UnsafeFolderError, "can be written by other users"):
                files.cache_dir("openclipart")
            os.chmod(folder, 0o700)
            if os.getuid() == 0:  # Only root can give a folder to another user.
                os.chown(folder, 12345, -1)
                with self.assertRaisesRegex(files.UnsafeFolderError, "belongs to another user"):
                    files.cache_dir("openclipart")
            os.rmdir(folder)
            os.symlink(tempfile.mkdtemp(dir=self.get_temp_dir()), folder)
            with self.assertRaisesRegex(files.UnsafeFolderError, "symlink"):
                files.cache_dir("openclipart")
            os.remove(folder)  # The temp dir's clean-up does not follow it.

    def test_retrain_mismatched_never_overwrites_a_reference_outside_the_cache(self):
        tmp = self.get_temp_dir()
        path = os.path.join(tmp, "mine.keras")
        files.save_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), path)
        task = mock.Mock()
        task.check_model.side_effect = ValueError("wrong class count")
        with (
            mock.patch.dict(os.environ, {"XDG_CACHE_HOME": os.path.join(tmp, "xdg")}),
            mock.patch.object(train, "train_reference") as retrain,
        ):
            with self.assertRaisesRegex(ValueError, "wrong class count"):
                train.load_or_train_reference(task, path, retrain_mismatched=True)
            retrain.assert_not_called()
            # In the user's cache (the --local reference), it is retrained.
            cached = os.path.join(files.cache_dir("local"), "reference.keras")
            shutil.copy(path, cached)
            retrain.return_value = mock.Mock()
            task.check_model.side_effect = [ValueError("wrong class count"), None]
            train.load_or_train_reference(task, cached, retrain_mismatched=True)
            retrain.assert_called_once_with(task, cached)

    def test_a_truncated_vocabulary_is_refused_naming_it(self):
        path = os.path.join(self.get_temp_dir(), "vocab.txt")
        tokenizer.CaptionTokenizer([*tokenizer.RESERVED, "cat", "dog"]).save(path)
        self.assertLen(tokenizer.CaptionTokenizer.load(path).vocab, 6)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text[:-3])  # Cut inside the last token.
        with self.assertRaisesRegex(ValueError, r"vocabulary '.*vocab.txt' is truncated"):
            tokenizer.CaptionTokenizer.load(path)

    def test_global_selection_that_replicas_cannot_share_is_refused_before_training(self):
        model = mock.Mock(super_batch_size=30, selection_scope="global")
        model.sub_batch_size.return_value = 15
        with self.assertRaisesRegex(ValueError, "b = 15 of B = 30, which the 2 replicas"):
            train._check_global_selection(model, mock.Mock(num_replicas_in_sync=2))
        train._check_global_selection(model, mock.Mock(num_replicas_in_sync=3))
        model.selection_scope = "local"
        train._check_global_selection(model, mock.Mock(num_replicas_in_sync=2))

    def test_a_model_path_without_keras_is_refused_before_writing(self):
        with self.assertRaisesRegex(ValueError, "must end in '.keras'"):
            files.save_model(None, os.path.join(self.get_temp_dir(), "learner.h5"))


class KillAnywhereTest(tf.test.TestCase):
    @pytest.mark.slow
    def test_a_run_killed_at_every_kind_of_write_ends_as_an_uninterrupted_one(self):
        whole = os.path.join(self.get_temp_dir(), "whole")
        killed = os.path.join(self.get_temp_dir(), "killed")
        os.makedirs(whole)
        os.makedirs(killed)
        # The uninterrupted run goes alongside the lineage (the test's time is the lineage's).
        uninterrupted = _finish(_command(whole), whole)
        points = SMOKE_POINTS if SMOKE else KILL_POINTS
        for index, point in enumerate(points):
            _run_to(_command(killed), killed, point, index)
        last = _finish(_command(killed), killed)
        _wait(*uninterrupted)
        _wait(*last)

        for name in ("reference.keras", "run/learner.keras", "run/baseline/learner.keras"):
            for a, b in zip(
                _weights(os.path.join(whole, name)),
                _weights(os.path.join(killed, name)),
                strict=True,
            ):
                np.testing.assert_array_equal(a, b, err_msg=name)
        for name in ("run/metrics.json", "run/baseline/metrics.json"):
            self.assertEqual(_json(os.path.join(whole, name)), _json(os.path.join(killed, name)))

        # The replay record: every step once, in order, the same ids; no stray chunk.
        ids = replay.load_selected_ids(os.path.join(killed, "run"))
        self.assertEqual(len(ids), 12)
        np.testing.assert_array_equal(ids, replay.load_selected_ids(os.path.join(whole, "run")))
        chunks = sorted(os.listdir(os.path.join(killed, "run", "replay")))
        self.assertTrue(all(replay.CHUNK.fullmatch(c) or c.startswith(".") for c in chunks))

        # The selection log: the same records, each step once in the file, the same examples.
        logs = [os.path.join(d, "run", "selection_log") for d in (whole, killed)]
        records = [selection_log.read_records(d) for d in logs]
        self.assertEqual([r["step"] for r in records[1]], [3, 6, 9, 12])
        self.assertEqual(records[0], records[1])
        with open(os.path.join(logs[1], selection_log.RECORDS)) as f:
            self.assertEqual(len(f.read().splitlines()), 4)
        examples = [_examples(d) for d in logs]
        self.assertEqual(sorted(examples[0]), sorted(examples[1]))
        for name in examples[0]:
            for key in examples[0][name]:
                np.testing.assert_array_equal(examples[0][name][key], examples[1][name][key])
        # The kill before the learner's rename left its dotted temporary file, which no one reads.
        self.assertTrue(glob.glob(os.path.join(killed, "run", ".learner.keras.*.keras")))

    @pytest.mark.slow
    def test_a_curation_killed_at_every_kind_of_write_is_refused_until_rerun(self):
        tmp = self.get_temp_dir()
        reference = tiny_reference(tmp)
        whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")

        def command(out, keep_fraction=0.5):
            return [
                sys.executable,
                "-m",
                "active_keras.curation.curate",
                f"--reference={reference}",
                "--data=digits",
                "--heldout_size=300",
                "--label_noise=0.2",
                f"--keep_fraction={keep_fraction}",
                "--examples_per_shard=200",
                f"--out_dir={out}",
            ]

        os.makedirs(killed)
        uninterrupted = _finish(command(whole), tmp)
        # A finished curation of another fraction first: its shards must never mix in.
        _wait(*_finish(command(killed, keep_fraction=0.25), killed))
        for index, point in enumerate(CURATE_POINTS):
            _run_to(command(killed), killed, point, index)
            try:
                counts = curated.verify_shards(killed)
            except (curated.CorruptShardError, FileNotFoundError):
                continue  # Refused: an unfinished curation.
            # Read as complete: then exactly the earlier curation, shards and manifest agree.
            manifest = _json(os.path.join(killed, curated.MANIFEST))
            self.assertEqual(manifest["keep_fraction"], 0.25, point)
            self.assertEqual(sum(counts.values()), manifest["kept"], point)
        _wait(*_finish(command(killed), killed))
        _wait(*uninterrupted)

        self.assertEqual(
            _json(os.path.join(whole, curated.MANIFEST)),
            _json(os.path.join(killed, curated.MANIFEST)),
        )
        self.assertEqual(
            sorted(os.path.basename(p) for p in curated.glob_shards(killed)),
            sorted(os.path.basename(p) for p in curated.glob_shards(whole)),
        )
        # The same records in the same order (a record's bytes may not be: protobuf map order).
        for x, y in zip(curated.load_split(whole), curated.load_split(killed), strict=True):
            np.testing.assert_array_equal(x, y)
        for name in ("scores.npz",):
            with np.load(os.path.join(whole, name)) as a, np.load(os.path.join(killed, name)) as b:
                for key in a.files:
                    np.testing.assert_array_equal(a[key], b[key])


if __name__ == "__main__":
    tf.test.main()
