r"""Moves stored ladder runs' config hashes past changes that leave the runs as they were.

A stored run counts only while its `run.json`'s `config_hash` equals the digest of its suite's
configuration now (`benchmark.config_hash`: the gin config string of the shipped files and the
run's bindings). Moving a binding between files, or removing one that had its default, changes
every digest without changing any run. `MIGRATIONS` lists such changes in order; for each stored
run whose hash differs from its digest now, this undoes the changes one by one, newest first, on
the run's configuration (a removed binding is put back and parsed again; a moved line is taken
out of the config string), until the stored hash is reproduced exactly. Only then does it store
the new digest, and keep each earlier one as `config_hash_before_<change>`. A run whose hash is
reproduced by no chain is left alone and listed.

Usage:

  python tools/migrate_hashes.py --suite=classact [--store=benchmarks/results/classact_runs]
  python tools/migrate_hashes.py --suite=activeclip --dry_run
"""

import hashlib
import json
import os
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import benchmark  # noqa: E402

FLAGS = flags.FLAGS
# --suite and --store are tools/benchmark.py's flags (a ladder suite; its folder of stored runs).
flags.DEFINE_bool("dry_run", False, "Report what would change; write nothing.")

# Oldest first: (name, bindings it removed, config lines it moved into the shipped gin files).
MIGRATIONS = (
    # Issue 25: the Open Clip Art cache moved from a fixed /tmp folder to the user's cache.
    ("cache_move", ["OpenClipArt.cache_dir = '/tmp/active_keras_cache/openclipart'"], []),
    # Issue 26: the gin factory takes ActiveLearner's defaults; the CLI's choice is a binding.
    ("defaults_move", [], ["ActiveLearner.selection_scope = 'global'"]),
)


def _config_str(run, removed):
    import gin

    from active_keras import main as cli

    cli.parse_config(run.gin_files, list(removed) + run.bindings)
    text = gin.config_str()
    gin.clear_config()
    return text


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_lines(text, lines):
    """`text` with one occurrence of each of `lines` taken out, or None if one is missing."""
    rows = text.split("\n")
    for line in lines:
        if line not in rows:
            return None
        rows.remove(line)
    return "\n".join(rows)


def chain(run):
    """`[(name, hash before that change)]`, newest change first, then the hash now.

    Returns `(now, [(name, hash before it), ...])` with the list in `MIGRATIONS`
    order reversed: entry `i` is the configuration with the newest `i + 1`
    changes undone.
    """
    now = _digest(_config_str(run, []))
    earlier = []
    for k in range(len(MIGRATIONS) - 1, -1, -1):
        undone = MIGRATIONS[k:]
        removed = [b for _, bindings, _ in undone for b in bindings]
        moved = [line for _, _, lines in undone for line in lines]
        text = _without_lines(_config_str(run, removed), moved)
        earlier.append((MIGRATIONS[k][0], None if text is None else _digest(text)))
    return now, earlier


def migrate(run, info):
    """Updates `info` (a run.json) in place; returns "same", "migrated" or "unexplained"."""
    now, earlier = chain(run)
    if info["config_hash"] == now:
        return "same"
    hashes = [h for _, h in earlier]
    if info["config_hash"] not in hashes:
        return "unexplained"
    depth = hashes.index(info["config_hash"])  # How many changes the run predates.
    for name, before in earlier[: depth + 1]:
        info.setdefault(f"config_hash_before_{name}", before)
    info["config_hash"] = now
    return "migrated"


def main(argv):
    del argv
    suite = benchmark.LADDER_SUITES[FLAGS.suite]
    store = FLAGS.store or os.path.join(ROOT, "benchmarks", "results", f"{FLAGS.suite}_runs")
    reference = os.path.join("benchmarks", "runs", FLAGS.suite, "_reference", "reference.keras")
    os.chdir(ROOT)  # The gin files include each other by repository-relative paths.
    counts = {"same": 0, "migrated": 0, "unexplained": 0}
    for run in suite.make_runs(False, reference):
        path = os.path.join(store, run.name, "run.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            info = json.load(f)
        outcome = migrate(run, info)
        counts[outcome] += 1
        if outcome == "unexplained":
            print(f"unexplained: {run.name} (stored {info['config_hash']})")
        if outcome == "migrated" and not FLAGS.dry_run:
            with open(path, "w") as f:
                json.dump(info, f, indent=1)
    print(counts)


if __name__ == "__main__":
    app.run(main)
