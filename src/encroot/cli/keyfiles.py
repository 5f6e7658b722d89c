"""Key files as the commands read them: one error line naming the file, closed after use."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..errors import InputError
from ..keys import Key, KeyFormat

__all__ = ["closing_all", "read_key"]


def read_key(path: str | os.PathLike[str], keyformat: KeyFormat | None, what: str) -> Key:
    """The key in ``path``; ``what`` names the option in the error (``--key-file``).

    Raises:
        InputError: the file cannot be read.
    """
    try:
        return Key.from_file(path, keyformat)
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r}: cannot read it ({exc.strerror})",
                         subject=str(path)) from exc


@contextlib.contextmanager
def closing_all(keys: list[Key | None]) -> Iterator[list[Key | None]]:
    """Wipe every key's buffer when the block ends, however it ends."""
    try:
        yield keys
    finally:
        for key in keys:
            if key is not None:
                key.close()
