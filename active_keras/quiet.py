"""A quiet console: our progress and results, not TensorFlow's start-up log.

TensorFlow 2.21 writes C++ log lines to stderr while it is imported (oneDNN,
CUDA stubs, CPU features; "All log messages before absl::InitializeLog() is
called are written to STDERR"), before its logging reads
`TF_CPP_MIN_LOG_LEVEL`: the variable alone does not hide them. The entry points
(`active_keras.main`, `tools/benchmark.py`) therefore call `start()` before
anything imports TensorFlow:

- `TF_CPP_MIN_LOG_LEVEL` defaults to 2 (C++ errors only) and `GRPC_VERBOSITY`
  to ERROR; a value set in the environment is kept.
- TensorFlow is imported, and its devices listed, with the process's stderr
  (file descriptor 2) captured; the captured text is written back without the
  C++ records below that level, and without "failed call to cuInit" when
  TensorFlow also reported that the machine has no CUDA driver.
- Python logging drops INFO records that TensorFlow's and Keras's own code
  logs (such as "Sharding callback duration"), and TensorFlow's notices about
  deprecated functions that its own code calls. Records and warnings from our
  code, from Keras's `warnings` and from the user's code are untouched.

`--verbose` on the command line (or `ACTIVE_KERAS_VERBOSE=1`) turns all of this
off: TensorFlow then prints everything as it would by itself.

Example:

```python
from active_keras import quiet

quiet.start(verbose=quiet.verbose_requested(sys.argv))  # Before TensorFlow is imported.
```

`error_line(error)` is the one `error: ...` line every entry point ends a
failure with (gin's context lines go before it with `--verbose`, else nowhere).

Importing this module does not import TensorFlow.
"""

import logging
import os
import re
import sys
import tempfile

DEFAULT_CPP_LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR.
VERBOSE_ENV = "ACTIVE_KERAS_VERBOSE"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
# An absl / glog C++ record: "I0000 00:00:1796094958.987564    5550 port.cc:153] text".
_RECORD = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
_PRELUDE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Lines that start something new (a Python warning or traceback), never a C++ record's tail.
_NEW_MESSAGE = re.compile(r"^(\S+:\d+: \w*(Warning|Error)\b|Traceback \(|\w*(Warning|Error): )")
_NO_CUDA_DRIVER = "Could not find cuda drivers on your machine"
_NO_CUDA_INIT = "failed call to cuInit"


def verbose_requested(argv=None):
    """Whether `--verbose` is on the command line or `ACTIVE_KERAS_VERBOSE` is set (not 0)."""
    if os.environ.get(VERBOSE_ENV, "0") not in ("", "0", "false", "False"):
        return True
    argv = sys.argv if argv is None else argv
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def cpp_min_level():
    """The C++ log level in force: the environment's `TF_CPP_MIN_LOG_LEVEL`, else ours."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_CPP_LEVEL))
    except ValueError:
        return int(DEFAULT_CPP_LEVEL)


def filter_startup(text, min_level):
    """`text` (stderr captured during TensorFlow's import) without its start-up noise.

    Drops C++ records whose severity is below `min_level` (with their
    continuation lines), absl's "before InitializeLog" notice, and, when
    `min_level` >= 2 and the text says the machine has no CUDA driver, the
    "failed call to cuInit" error that follows from it. Everything else (Python
    warnings, tracebacks, C++ records at or above the level) is kept in order.
    """
    if min_level <= 0:
        return text
    lines = text.splitlines(keepends=True)
    no_driver = any(_NO_CUDA_DRIVER in line for line in lines)
    kept = []
    dropping = False
    for line in lines:
        record = _RECORD.match(line)
        if record:
            level = _SEVERITY[record.group(1)]
            expected = no_driver and _NO_CUDA_INIT in line and min_level >= 2
            dropping = level < min_level or expected
        elif line.rstrip("\r\n") == _PRELUDE:
            continue
        elif _NEW_MESSAGE.match(line):
            dropping = False
        # Otherwise a continuation line: it goes with the record before it.
        if not dropping:
            kept.append(line)
    return "".join(kept)


def start(verbose=False):
    """Imports TensorFlow quietly and quiets its Python logger (see the module docstring).

    Call it before anything imports TensorFlow; if TensorFlow is already
    imported, only its Python logger is quieted. With `verbose`, does nothing.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_CPP_LEVEL)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" not in sys.modules:
        _import_tensorflow_captured(cpp_min_level())
    quiet_python_logs()


def _import_tensorflow_captured(min_level):
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # CUDA's initialisation logs here, once.
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            sys.stderr.write(filter_startup(text, min_level))
            sys.stderr.flush()


class _TensorFlowInternals(logging.Filter):
    """Drops INFO records logged by TensorFlow's or Keras's own code, and their deprecation
    notices about calls made inside TensorFlow or Keras.

    Records from any other code (ours, the user's) pass, whatever their level.
    """

    def __init__(self, roots):
        super().__init__()
        self.roots = tuple(roots)

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return not str(record.pathname).startswith(self.roots)
        if "deprecated" not in str(record.msg) or not isinstance(record.args, tuple):
            return True
        # TensorFlow's notice: "From %s: %s (from %s) is deprecated ...", the caller first.
        return not (record.args and str(record.args[0]).startswith(self.roots))


def quiet_python_logs():
    """Filters TensorFlow's INFO lines and internal deprecation notices from Python logging.

    Applies to the `tensorflow` logger and to absl's (TensorFlow logs through
    both); records from other code keep their levels.
    """
    import keras
    import tensorflow as tf

    roots = [os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (tf, keras)]
    for logger in (tf.get_logger(), logging.getLogger("absl")):
        if not any(isinstance(f, _TensorFlowInternals) for f in logger.filters):
            logger.addFilter(_TensorFlowInternals(roots))


# Gin appends its context to an error raised inside a configurable or while parsing: from the
# first "  In call to configurable 'run' (<function run at 0x...>)", "  In file ..., line N" or
# "  In bindings string line N" line on, every line is context, not the error.
_GIN_CONTEXT = re.compile(r"^\s+In (call to configurable|file |bindings string)")


def split_gin_context(error):
    """`(message lines, gin's context lines)` of `str(error)`."""
    lines = str(error).splitlines() or [type(error).__name__]
    cut = next((i for i, ln in enumerate(lines) if i and _GIN_CONTEXT.match(ln)), len(lines))
    return lines[:cut], lines[cut:]


def one_line(error):
    """`error` as one line with gin's location folded in (for errors in a gin file or binding)."""
    message, context = split_gin_context(error)
    where = " ".join(ln.strip() for ln in context if ln.strip() and ln.strip() != "^")
    return " ".join(ln.strip() for ln in message if ln.strip()) + (f" ({where})" if where else "")


def error_line(error, verbose=False):
    """`error: <message>`: one line, the last printed; gin's context goes before it with
    `verbose` (else it is dropped)."""
    message, context = split_gin_context(error)
    head = "".join(f"{ln}\n" for ln in context) if verbose else ""
    return head + "error: " + " ".join(ln.strip() for ln in message if ln.strip())
