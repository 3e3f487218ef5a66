"""Files written whole or not at all: a hidden temp file (or folder) beside the target,
filled, then renamed into place (``os.replace`` is atomic on one file system).

Every writer of the project (cards, model files, run folders, video outputs) goes through
:func:`atomic_temp_path` + :func:`publish` or the one-call :func:`atomic_write_bytes` /
:func:`atomic_write_text`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_temp_path(final: str | os.PathLike, *, directory: bool = False) -> Path:
    """A new hidden temp file (or folder) next to ``final``, to fill and then :func:`publish`.

    Raises:
        OSError: the folder cannot be written; the message names ``final``, not the temp name.
    """
    p = Path(final)
    try:
        if directory:
            return Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
        fd, name = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=f".tmp{p.suffix}", dir=p.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if p.parent.exists() and not p.parent.is_dir():
            reason = "that path is a file, not a folder"
        raise type(exc)(exc.errno, f"cannot write {p} in {p.parent}: {reason}") from None
    os.close(fd)
    return Path(name)


def publish(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename a finished temp file or folder into place with the umask's permissions
    (mkstemp/mkdtemp make them private); the rename is atomic."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, (0o777 if Path(tmp).is_dir() else 0o666) & ~mask)
    os.replace(tmp, final)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temp_path(p)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
