"""The decoded-image cache: an image folder is decoded once, later runs read ``uint8`` arrays.

Where: ``$GHOSTNAS_HOME/cache/data`` (default ``~/.ghostnas/cache/data``), one uncompressed
``.npz`` file per folder state. Clear it with ``ghostnas data clear-cache`` (:func:`clear_cache`)
or by deleting that folder (``rm -rf ~/.ghostnas/cache/data``); nothing else is kept there.

The key is a SHA-256 of the folder's content digest (every file's relative path, size and
modification time; :func:`ghostnas.data.folder.scan_folder`), the requested image size and the
cache format version. So adding, removing, replacing or touching an image, or asking for another
``--image-size``, is a different key and a fresh decode. A new entry replaces older entries of
the same folder (by absolute path), so editing a folder does not pile up stale copies.

Entries are written atomically (a temporary file in the same folder, flushed, then renamed), so
a killed run leaves no half-written entry, and they are read with ``allow_pickle=False``. An
unreadable entry is ignored (and decoded again), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CACHE_VERSION",
    "cache_dir",
    "cache_key",
    "clear_cache",
    "entry_path",
    "read_entry",
    "read_meta",
    "write_entry",
]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$GHOSTNAS_HOME/cache/data``, default ``~/.ghostnas/cache/data``."""
    home = os.environ.get("GHOSTNAS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".ghostnas"
    return base / "cache" / "data"


def cache_key(digest: str, image_size: int | None) -> str:
    """Entry key of a folder state decoded at ``image_size`` (None: the images' own size)."""
    text = f"v{CACHE_VERSION}\n{digest}\n{image_size}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _folder_tag(root: Path) -> str:
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


def entry_path(root: Path, key: str) -> Path:
    """The cache file of folder ``root`` under ``key``."""
    return cache_dir() / f"{_folder_tag(root)}-{key}.npz"


def read_entry(root: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The cached arrays and metadata, or None when absent or unreadable."""
    path = entry_path(root, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable cache entry %s (%s); decoding again", path, exc)
        return None
    if meta.get("version") != CACHE_VERSION:
        return None
    return arrays, meta


def read_meta(root: Path, key: str) -> dict[str, Any] | None:
    """Only the metadata of an entry (the arrays are not read), or None."""
    path = entry_path(root, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    return meta if meta.get("version") == CACHE_VERSION else None


def write_entry(root: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path | None:
    """Store an entry atomically and drop older entries of the same folder.

    A cache that cannot be written (read-only home, full disk) is logged and skipped: the data
    is in memory already, only the next run's shortcut is lost.
    """
    path = entry_path(root, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps({**meta, "version": CACHE_VERSION})), **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("cannot write the decoded-image cache %s (%s); the next run decodes again", path, exc)
        return None
    for old in path.parent.glob(f"{_folder_tag(root)}-*.npz"):
        if old != path:
            old.unlink(missing_ok=True)
    log.debug("cached decoded images in %s", path)
    return path


def clear_cache() -> int:
    """Delete every cache entry; returns how many files were removed."""
    folder = cache_dir()
    if not folder.is_dir():
        return 0
    n = sum(1 for p in folder.iterdir() if p.is_file())
    shutil.rmtree(folder)
    return n
