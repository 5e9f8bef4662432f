"""Atomic, durable file writes: a temporary file in the same folder, fsync, os.replace,
then fsync of the folder, so an interrupted write leaves either the old file or the new
one, and a finished write survives a power cut.  No dependency on the rest of rgsym."""
from __future__ import annotations

import io
import json
import os
import signal
import tempfile
from typing import Mapping

import numpy as np

__all__ = ["KILL_AT_ENV", "kill_point", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_savez",
           "load_npz"]

#: Fault injection for the crash tests: with RGSYM_KILL_AT=<point> in the environment the
#: process SIGKILLs itself at that point (``rgsym.results`` lists the points of a run).
KILL_AT_ENV = "RGSYM_KILL_AT"


def kill_point(where: str) -> None:
    """SIGKILLs this process if ``where`` is the point named in $RGSYM_KILL_AT.

    Args:
      where: the kill point's name, e.g. ``replace:summary.json``.
    """
    if os.environ.get(KILL_AT_ENV) == where:
        os.kill(os.getpid(), signal.SIGKILL)


_UMASK = os.umask(0)  # read once (the only way to read it), then restored
os.umask(_UMASK)


def _fsync_dir(directory: str) -> None:
    """Makes a rename in ``directory`` durable (POSIX: the entry lives in the folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open folders (Windows) have nothing to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Writes ``data`` to ``path`` through a temporary file in the same folder, fsync,
    os.replace and fsync of the folder (missing folders are made).

    Args:
      path: the file to write or replace.
      data: its new contents.

    Returns:
      ``path``.

    Raises:
      OSError: the write failed (e.g. ENOSPC; the errno is kept and the message names the
        file); the previous file is intact and no temporary file is left.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would give
        kill_point(f"replace:{os.path.basename(path)}")
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as e:  # e.g. ENOSPC: say which file, keep the errno for callers
        raise OSError(e.errno, f"{e.strerror or e} while writing {path} ({len(data)} bytes); "
                      "the previous version of the file, if any, is intact", str(path)) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str, text: str) -> str:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8.

    Args:
      path: the file to write or replace.
      text: its new contents.

    Returns:
      ``path``.

    Raises:
      OSError: as :func:`atomic_write_bytes`.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def atomic_write_json(path, obj) -> None:
    """Writes ``obj`` atomically as indented, key-sorted JSON.

    Args:
      path: the file to write or replace.
      obj: JSON-serialisable data; numpy scalars and arrays are written as numbers/lists.

    Raises:
      TypeError: ``obj`` holds a value JSON cannot represent (nothing is written).
      ValueError: ``obj`` holds a circular reference (nothing is written).
      OSError: as :func:`atomic_write_bytes`.
    """
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default)
                      + "\n")


def atomic_savez(path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes ``arrays`` atomically as one uncompressed .npz file.

    Args:
      path: the file to write or replace; written as given (no ``.npz`` is appended).
      arrays: ``{name: array}``; each value goes through ``np.asarray``.

    Raises:
      OSError: as :func:`atomic_write_bytes`.
    """
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def load_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, loaded into memory (the file is closed on return).

    Args:
      path: an .npz file, e.g. one written by :func:`atomic_savez`.

    Returns:
      ``{name: np.ndarray}`` in the file's order.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file is neither .npz nor .npy, or holds object arrays (pickles are
        not loaded).
      zipfile.BadZipFile: a damaged .npz.
    """
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
