r"""Command line: `python -m active_keras.main --gin_file=gin/classact.gin`.

Flags:
  --gin_file      Gin config(s), parsed in order (repeatable).
  --gin_bindings  Extra bindings such as `run.num_steps = 500` (repeatable).
  --model_dir     Output directory (metrics.json, operative_config.gin, tb/).
  --local         Shrink the config to a smoke run (applies gin/local.gin last).
  --compare_with  Gin file(s) for a baseline run (e.g. gin/uniform.gin), run into
                  MODEL_DIR/baseline with the same configs; prints the comparison.
  --strategy      one_device | mirrored | multi_worker_mirrored | tpu.
  --tpu_address   For --strategy=tpu.
  --peer_timeout  Multi-worker: seconds to wait for a missing peer (default 600).
  --verbose       Also print TensorFlow's own log (C++ start-up lines, INFO lines,
                  its deprecation notices); ACTIVE_KERAS_VERBOSE=1 does the same.
                  Without it they are hidden (`active_keras.quiet`); an explicit
                  TF_CPP_MIN_LOG_LEVEL in the environment is respected.

Exit status: 0 when done; 3 when `--model_dir` (or the reference's checkpoint
folder) holds checkpoints of another configuration (`CheckpointMismatch`: use
another folder, or move it aside to start over); 1 for any other failure. A
failure ends with one `error: ...` line.

Example:

  python -m active_keras.main --gin_file=gin/classact.gin \
      --compare_with=gin/uniform.gin --model_dir=runs/classact
"""

import json
import os
import re
import sys
import traceback

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
flags.DEFINE_string("model_dir", None, "Where the run writes its outputs.")
flags.DEFINE_bool("local", False, "Shrink the run to a quick smoke test (gin/local.gin).")
flags.DEFINE_multi_string("compare_with", [], "Gin file(s) of a baseline to compare against.")
flags.DEFINE_enum(
    "strategy",
    None,
    ["one_device", "mirrored", "multi_worker_mirrored", "tpu"],
    "tf.distribute strategy (overrides run.strategy); multi-worker reads TF_CONFIG.",
)
flags.DEFINE_string("tpu_address", None, "TPU name or grpc:// address ('local' on a TPU VM).")
flags.DEFINE_integer(
    "peer_timeout",
    None,
    "Multi-worker: seconds to wait for a peer worker (to join, or in a collective) before "
    "exiting with an error that names it (default 600).",
)
flags.DEFINE_bool(
    "verbose",
    False,
    "Also print TensorFlow's own log lines (C++ start-up, INFO, internal deprecations).",
)
flags.DEFINE_integer(
    "logical_cpus", 0, "Split the CPU into this many logical devices (to try mirrored on a CPU)."
)

GIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


class ConfigError(ValueError):
    """A gin file or binding could not be applied."""


def _moved_hint(error):
    """A note naming the new binding when gin's `error` is about a moved `run.*` one, else ""."""
    from active_keras import train

    match = re.search(r"Configurable 'run' doesn't have a parameter named '(\w+)'", str(error))
    if not match or match.group(1) not in train.SELECTION_KNOBS:
        return ""
    return f" (run.{match.group(1)} is now ActiveLearner.{match.group(1)}.)"


def parse_config(gin_files, bindings, local=False):
    """Parses gin files, then bindings one at a time, naming whichever fails.

    With `local`, gin/local.gin is parsed last, so that it shrinks the run
    whatever the files and bindings set.
    """
    import gin

    from active_keras import quiet

    gin.clear_config()
    # `include 'gin/...'` lines then resolve from any working directory.
    gin.add_config_file_search_path(os.path.dirname(GIN_DIR))
    for path in gin_files:
        _parse_file(gin, path)
    for binding in bindings:
        try:
            gin.parse_config(binding)
        except Exception as e:  # noqa: BLE001 - gin raises many types; name the binding.
            raise ConfigError(
                f"Bad gin binding {binding!r}: {quiet.split_gin_context(e)[0][0]}{_moved_hint(e)}"
            ) from e
    if local:
        _parse_file(gin, os.path.join(GIN_DIR, "local.gin"))
    gin.finalize()


def _parse_file(gin, path):
    from active_keras import quiet

    in_repo = os.path.join(os.path.dirname(GIN_DIR), path)
    if not os.path.exists(path) and os.path.exists(in_repo):
        path = in_repo
    if not os.path.exists(path):
        raise ConfigError(f"Gin file {path!r} does not exist.")
    try:
        gin.parse_config_file(path)
    except Exception as e:  # noqa: BLE001 - gin raises many types; name the file.
        raise ConfigError(
            f"Gin file {path!r} is invalid: {quiet.one_line(e)}{_moved_hint(e)}"
        ) from e


def run_config(gin_files, bindings, model_dir, local=False):
    from active_keras import train

    parse_config(gin_files, bindings, local)
    return train.run(model_dir)


def main(argv):
    if len(argv) > 1:
        fail(app.UsageError(f"Unexpected arguments: {argv[1:]}"))
    if not FLAGS.gin_file:
        fail(app.UsageError("Pass at least one --gin_file, e.g. --gin_file=gin/classact.gin."))
    model_dir = FLAGS.model_dir or os.path.join(
        "runs", os.path.splitext(os.path.basename(FLAGS.gin_file[-1]))[0]
    )
    if FLAGS.logical_cpus:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.logical_cpus
        )
    from active_keras.analysis import speedup
    from active_keras.tasks import base
    from active_keras.training import checkpointing

    try:
        bindings = list(FLAGS.gin_bindings)
        if FLAGS.strategy:
            bindings.append(f"run.strategy = '{FLAGS.strategy}'")
        if FLAGS.tpu_address:
            bindings.append(f"make_strategy.tpu_address = '{FLAGS.tpu_address}'")
        if FLAGS.peer_timeout is not None:
            bindings.append(f"make_strategy.peer_timeout = {FLAGS.peer_timeout}")
        name = os.path.splitext(os.path.basename(FLAGS.gin_file[-1]))[0]
        print(f"run: {name} in {model_dir}", flush=True)
        curve = run_config(FLAGS.gin_file, bindings, model_dir, FLAGS.local)
        if FLAGS.compare_with and curve:
            baseline_dir = os.path.join(model_dir, "baseline")
            print(f"\nbaseline: {os.path.basename(FLAGS.compare_with[-1])} in {baseline_dir}")
            baseline = run_config(
                FLAGS.gin_file + FLAGS.compare_with, bindings, baseline_dir, FLAGS.local
            )
            # The task's primary metric: test accuracy (ClassAct) or image-to-text recall@5 (CLIP).
            metric = base.primary_metric(curve[0])
            rows = {
                "baseline: " + os.path.basename(FLAGS.compare_with[-1]): speedup.compare(
                    baseline, baseline, metric
                ),
                name: speedup.compare(
                    baseline, curve, metric, extra_flops=_reference_pretraining(model_dir)
                ),
            }
            print(f"\nComparison (target: the baseline's best {metric.replace('_', ' ')})")
            print(speedup.format_table(rows, metric))
            print(
                "(One seed, one budget: a quick look, not evidence. The README's \"When does "
                'selection pay?" table has speed-ups over 3 seeds against a tuned, decayed '
                "uniform baseline: benchmarks/results/classact.json.)"
            )
            from active_keras.analysis import report

            # The run's report again, now with the baseline's curves beside it.
            print(f"report: {report.write_report(model_dir, compare=[baseline_dir])}")
    except checkpointing.CheckpointMismatch as e:
        fail(e, checkpointing.EXIT_OTHER_RUN)  # Its own status: see the module docstring.
    except (ValueError, OSError, FloatingPointError) as e:
        fail(e)
    except Exception as e:
        if not _lost_peer(e):
            # A bug, not bad input: its traceback, then still the one error line, last.
            traceback.print_exc()
            fail(e)
        from active_keras.training import peers

        # TF's message starts "Graph execution error:"; the cause is on a later line.
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        causes = [ln for ln in lines if "aborted by" in ln or "Deadline" in ln] or lines[-1:]
        cause = causes[0] if causes else "no message"
        print(
            f"error: lost contact with the other workers ({type(e).__name__}: {cause}): "
            f"{peers.describe_lost()} Restart every worker with the same command to resume "
            "from the last checkpoint.",
            file=sys.stderr,
        )
        sys.exit(1)


def fail(error, status=1):
    """Prints `quiet.error_line(error)` to stderr and exits with `status`."""
    from active_keras import quiet

    print(quiet.error_line(error, FLAGS.verbose), file=sys.stderr, flush=True)
    sys.exit(status)


def _reference_pretraining(model_dir):
    with open(os.path.join(model_dir, "metrics.json")) as f:
        return json.load(f).get("reference_pretraining_flops", 0)


def _lost_peer(error):
    """Whether `error` is a collective that failed because a multi-worker peer went away."""
    import tensorflow as tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    return bool(os.environ.get("TF_CONFIG")) and isinstance(error, lost)


SUPERVISED = "ACTIVE_KERAS_SUPERVISED"


def supervise(argv):
    """Runs this command as a child and returns its exit status (1 if a signal ended it).

    A multi-worker worker can block in TensorFlow's runtime, where only a kill
    ends it (`training.peers.start_deadline`'s watchdog, which prints the
    `error:` line first). This small parent outlives that kill and turns it
    into the command's exit status 1. Ctrl-C reaches the child (same process
    group); the parent waits for it.
    """
    import signal
    import subprocess

    env = dict(os.environ, **{SUPERVISED: "1"})
    child = subprocess.Popen([sys.executable, "-m", "active_keras.main", *argv[1:]], env=env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # The child gets it and exits with an error.
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())  # Preemption: pass it on.
    status = child.wait()
    return status if status >= 0 else 1


if __name__ == "__main__":
    if os.environ.get("TF_CONFIG") and not os.environ.get(SUPERVISED):
        sys.exit(supervise(sys.argv))
    from active_keras import quiet

    if not set(sys.argv[1:]) & {"--help", "--helpshort", "--helpfull", "-h", "-?"}:
        quiet.start(verbose=quiet.verbose_requested(sys.argv[1:]))  # Before TensorFlow starts.
    app.run(main)
