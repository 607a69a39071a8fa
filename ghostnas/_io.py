"""Small file helpers shared by every writer: outputs are replaced atomically, never truncated."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ghostnas._fs import reports_write_faults
from ghostnas.errors import GhostnasError

__all__ = ["atomic_write_bytes", "atomic_write_text", "new_file_mode", "read_user_text", "temp_file_beside"]


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the process's umask.

    ``tempfile.mkstemp`` creates its files 0600 (private), which is right for a temporary file
    but wrong for an output renamed into place: a run folder's results would be unreadable to
    the user's group even where their umask allows it. The umask can only be read by setting
    it, so it is set back at once (the window is a few instructions, in one thread at a time
    under the GIL).
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_file_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, for a write that ends in ``os.replace``.

    Returns the open descriptor and the file name; the file has the mode a plainly created
    file would have (:func:`new_file_mode`), so the renamed output honours the umask.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


@reports_write_faults  # a full disk is one line naming the file (ghostnas._fs)
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (an atomic operation on POSIX file systems). A kill at any moment
    leaves at worst a stray ``.tmp`` file, never a truncated output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_user_text(path: Path, max_bytes: int, what: str, error: type[GhostnasError]) -> str:
    """Read a user-supplied text file (config, search space) with one-line errors.

    Args:
        path: The file.
        max_bytes: Larger files are refused before reading (hostile or mistaken input).
        what: How to name the expected file in messages, e.g. ``"config JSON file"``.
        error: The :class:`GhostnasError` subclass to raise.
    """
    try:
        if path.stat().st_size > max_bytes:
            raise error(f"{path}: file is over {max_bytes} bytes; not a {what}")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; expected a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
