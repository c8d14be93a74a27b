"""Writing files so that a failure never leaves a half-written one, and checking output paths up front.

``atomic_write(path, write)`` calls ``write(tmp_path)`` on a temporary file in the target's folder and
renames it into place (``os.replace`` is atomic on one file system); on any error the temporary file is
removed and the target is as it was. ``writable(path, name)`` checks, before any work is done, that a file
can be created at ``path`` (its folder exists or can be made, and neither is a file in the way).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_text", "atomic_figure", "writable", "output_dir"]


def writable(path: str | os.PathLike, name: str) -> Path:
    """``path`` as a Path when a file can be written there; else a ValueError naming the argument ``name``."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name} {str(p)!r} is a folder; give a file name")
    parent = p.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{name} {str(p)!r}: {str(folder)!r} is a file, not a folder")
            if not os.access(folder, os.W_OK):
                raise ValueError(f"{name} {str(p)!r}: the folder {str(folder)!r} is not writable")
            break
    return p


def output_dir(path: str | os.PathLike, name: str) -> Path:
    """``path`` as a folder that exists (created with its parents), or a ValueError naming ``name``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} {str(p)!r} is a file, not a folder")
    writable(p / "x", name)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name} {str(p)!r}: cannot create the folder ({exc.strerror or exc})") from None
    return p


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], name: str = "path") -> Path:
    """Write ``path`` through ``write(tmp)`` and an atomic rename; the target is untouched on failure."""
    p = writable(path, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_text(path: str | os.PathLike, text: str, name: str = "path") -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"), name)


def atomic_figure(fig: Any, path: str | os.PathLike, name: str = "path", **kwargs: Any) -> Path:
    """``fig.savefig`` through ``atomic_write`` (the format from the target's suffix, default png)."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda t: fig.savefig(t, format=fmt, **kwargs), name)
