"""Output files: written whole or not at all, never through a link, never colliding.

Every file derive writes is first written to a staging file in the destination folder, created
exclusively under a random name (O_CREAT | O_EXCL | O_NOFOLLOW, as tempfile.mkstemp does), then
renamed over the destination with os.replace. A planted symlink is neither followed nor
overwritten through; two builds into one folder never share a staging name; a reader sees the
old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import DeriveError

_UMASK = os.umask(0o022)
os.umask(_UMASK)                 # read once: the process's umask, unchanged


def ensure_folder(folder: str | Path) -> Path:
    """The output folder, created if need be; a clear message when a part of the path is a file."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DeriveError(f"output folder {str(folder)!r}: a file of that name is in the way; give a folder") from None
    except NotADirectoryError:
        raise DeriveError(f"output folder {str(folder)!r}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise DeriveError(f"output folder {str(folder)!r}: cannot be created ({exc.strerror})") from None
    if not folder.is_dir():
        raise DeriveError(f"output folder {str(folder)!r} is not a folder")
    return folder


def stage(path: Path, data: bytes) -> Path:
    """data in a new staging file beside path (random name, exclusive create, no links followed)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)          # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def write_together(files: dict[Path, bytes | str]) -> None:
    """Write every file, or none: all are staged first, then each renamed into place. If staging
    fails, nothing is replaced and the staging files are removed."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            ensure_folder(path.parent)
            if path.is_dir():
                raise DeriveError(f"{str(path)!r} is a folder; cannot write a file there")
            staged.append((stage(path, data.encode("utf-8") if isinstance(data, str) else data), path))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in staged:
        os.replace(temporary, path)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    write_together({Path(path): data})


def read_input(path: str | Path, limit: int, what: str) -> bytes:
    """A user's input file, read with a bound: regular files only (a FIFO, /dev/zero or a folder is
    refused without blocking), and the size checked before a byte is read."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise DeriveError(f"{what} {str(path)!r}: cannot read it ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DeriveError(f"{what} {str(path)!r}: not a regular file; give a file of text")
        if info.st_size > limit:
            raise DeriveError(f"{what} {str(path)!r}: {info.st_size} bytes is too large; at most {limit} are accepted")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise DeriveError(f"{what} {str(path)!r}: too large; at most {limit} bytes are accepted")
    return data
