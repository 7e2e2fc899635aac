"""What the cli_utils tools share about files: an output path that can be written, input text that is UTF-8.

Both raise CliInputError with a one-line message naming the path; each tool's main() prints it and exits 2,
before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path


class CliInputError(Exception):
    """An unusable path or unreadable input the user can fix; exit status 2."""


def writable_file(path: str | Path) -> Path:
    """`path` as a file the tool may create or replace: not a directory, not under a file, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise CliInputError(f"{path} is a directory: give a file name for the output")
    _writable_folder(path.parent, path)
    return path


def writable_dir(path: str | Path) -> Path:
    """`path` as a folder the tool may create or write into: not a file, not under a file, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CliInputError(f"{path} is a file, not a folder: give a folder for the output")
    _writable_folder(path, path)
    return path


def read_utf8(path: Path) -> str:
    """The text of `path`; non-UTF-8 bytes or an unreadable file are a CliInputError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CliInputError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                            f"{error.start})") from None
    except OSError as error:
        raise CliInputError(f"{path}: cannot read it: {error.strerror or error}") from None


def _writable_folder(folder: Path, target: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folders below it will be created
    if not existing.is_dir():
        raise CliInputError(f"{target} cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CliInputError(f"{target} cannot be written: no permission to write in {existing}")
