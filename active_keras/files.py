"""Writes that survive a kill, the per-user cache folder, and the pause hook of the fault tests.

- `atomic_file(path)`: a file object whose content appears at `path` only
  once complete. The temporary file is made with `tempfile.mkstemp` in the
  target folder (so the rename stays on one file system, and no other user can
  plant or redirect it), named `.<name>.<random>.tmp`: a dotted name no glob of
  the package (`steps-*.npy`, `step_*.npz`, `*.npz`, ...) matches.
- `save_model(model, path)`: `model.save` the same way (Keras wants a `.keras`
  suffix, so the temporary name ends in `.keras` but starts with a dot).
- `cache_dir(*parts)`: `$XDG_CACHE_HOME/active_keras/...`, else
  `~/.cache/active_keras/...`, created private to the user; a folder on the
  way that another user owns, or that anyone may write to, is refused.
- `pause_point(site)`: with `ACTIVE_KERAS_PAUSE_AT=site` (or `site@n`, the
  n-th time in this process) the process writes the site's name to
  `$ACTIVE_KERAS_PAUSE_FILE` and sleeps until it is killed. Every write site
  of a run calls it between writing and publishing, so that
  `tests/test_faults.py` kills runs at chosen moments instead of lucky ones.
  Unset (always, outside that test), it costs one dictionary lookup.

Example:

```python
with atomic_file(os.path.join(model_dir, "metrics.json")) as f:
    json.dump(curve, f)
```
"""

import collections
import contextlib
import os
import stat
import tempfile
import time

import gin

PAUSE_AT = "ACTIVE_KERAS_PAUSE_AT"
PAUSE_FILE = "ACTIVE_KERAS_PAUSE_FILE"
_reached = collections.Counter()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; published files get the mode `open()` would have given them.
_FILE_MODE = 0o666 & ~_umask()


def pause_point(site):
    """Sleeps until killed when `$ACTIVE_KERAS_PAUSE_AT` names `site` (a test hook; see above)."""
    spec = os.environ.get(PAUSE_AT)
    if not spec:
        return
    name, _, count = spec.partition("@")
    if name != site:
        return
    _reached[site] += 1
    if _reached[site] != int(count or 1):
        return
    marker = os.environ.get(PAUSE_FILE)
    if marker:
        with open(f"{marker}.part", "w") as f:
            f.write(spec)
        os.replace(f"{marker}.part", marker)  # The test sees the marker whole or not at all.
    while True:
        time.sleep(3600)


def _temporary(path, suffix=".tmp"):
    """`(fd, name)` of a new private file beside `path`, named outside every glob."""
    folder, name = os.path.split(os.path.abspath(path))
    return tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)


def _publish(tmp, path, site):
    os.chmod(tmp, _FILE_MODE)
    pause_point(site)
    os.replace(tmp, path)  # Atomic: readers see the old file or the new one, never half.


@contextlib.contextmanager
def atomic_file(path, mode="w", site=None, **kwargs):
    """Opens a temporary file that replaces `path` when the block ends without an error.

    Args:
        path: The file to write.
        mode: `"w"` or `"wb"`.
        site: The name of this write for `pause_point` (default: the file's name).
        **kwargs: More arguments of `open` (`encoding=`).

    Yields:
        The open temporary file.
    """
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path, site or os.path.basename(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_model(model, path, site=None):
    """`model.save(path)`, atomically (a killed run never leaves a half-written `.keras` file).

    Raises:
        ValueError: `path` does not end in `.keras`, checked before anything is written.
    """
    if not str(path).endswith(".keras"):
        raise ValueError(f"A model file must end in '.keras'; got {path!r}.")
    fd, tmp = _temporary(path, suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        _publish(tmp, path, site or os.path.basename(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


class UnsafeFolderError(PermissionError):
    """A cache folder that another user owns or that anyone can write to."""


def check_private(folder):
    """Raises `UnsafeFolderError` unless `folder` is a directory of this user that others cannot
    write to (anyone else could plant a reference, a scan list or cached images there).
    """
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolderError(
            f"Cache folder {folder!r} is not a directory (a symlink or a file)."
        )
    if info.st_uid != os.getuid():
        raise UnsafeFolderError(
            f"Cache folder {folder!r} belongs to another user (uid {info.st_uid}); use a folder of "
            "your own (set XDG_CACHE_HOME)."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFolderError(
            f"Cache folder {folder!r} can be written by other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); make it private (chmod go-w) or set XDG_CACHE_HOME."
        )


def cache_root():
    """`$XDG_CACHE_HOME/active_keras`, else `~/.cache/active_keras` (unchecked: see `cache_dir`)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "active_keras")


def private_dir(folder):
    """`folder`, created readable and writable by this user only if missing, then checked.

    Raises:
        UnsafeFolderError: It is another user's, writable by anyone, or not a directory.
    """
    with contextlib.suppress(FileExistsError):
        os.makedirs(folder, mode=0o700)
    check_private(folder)
    return folder


def cache_dir(*parts):
    """The per-user cache folder `cache_root()/parts...`, created private and checked.

    Raises:
        UnsafeFolderError: It, or a folder between it and `cache_root()`, is
            another user's or writable by anyone.
    """
    folder = private_dir(cache_root())
    for part in parts:
        folder = private_dir(os.path.join(folder, part))
    return folder


@gin.configurable
def user_cache_path(name):
    """`cache_dir()/name` for gin: `run.reference_path = @reference/user_cache_path()`.

    Shared throw-away paths (the `--local` reference) live in the user's own
    cache, never in a fixed folder of /tmp that another user could create first.
    """
    head, tail = os.path.split(name)
    return os.path.join(cache_dir(*[p for p in head.split("/") if p]), tail)
