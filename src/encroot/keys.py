"""Key material for ZFS native encryption, kept out of every place a secret leaks.

A ``Key`` holds the exact bytes ZFS reads for its ``keyformat``: 64 hex
characters for ``hex``, 32 bytes for ``raw``, 8 to 512 bytes for
``passphrase`` (the limits of ``validate_key()`` in
``lib/libzfs/libzfs_crypto.c``).  The bytes live in one mutable buffer that is
overwritten with zeros when the key is closed, leaves its ``with`` block, or
is garbage-collected.  A key cannot be copied, pickled, compared by ``==``
or shown by ``repr``/``str``/logging, so it cannot end up in a log line, an
exception text or a temp file by accident.  The command layer hands the
buffer to ``zfs`` through a pipe on stdin (``keylocation=prompt`` or
``-L prompt``), never through argv or the environment.

Why passphrases may not hold a newline: ZFS reads non-raw key material from
a pipe with ``getline()`` and drops the trailing newline, so a newline
inside a passphrase would silently cut it short.
"""

from __future__ import annotations

import os
import string
import sys
import termios
from types import TracebackType
from typing import Any, Literal, NoReturn

from .errors import InputError, InvalidKey

__all__ = ["KEY_FORMATS", "Key", "KeyFormat"]

KeyFormat = Literal["hex", "raw", "passphrase"]
KEY_FORMATS: tuple[KeyFormat, ...] = ("hex", "raw", "passphrase")

WRAPPING_KEY_LEN = 32
MIN_PASSPHRASE_LEN = 8
MAX_PASSPHRASE_LEN = 512
_HEX_DIGITS = frozenset(string.hexdigits.encode())


def _wipe(buffer: bytearray) -> None:
    for index in range(len(buffer)):
        buffer[index] = 0
    buffer.clear()


def _as_buffer(material: str | bytes | bytearray | memoryview, what: str) -> bytearray:
    if isinstance(material, str):
        try:
            return bytearray(material.encode())
        except UnicodeEncodeError as exc:
            raise InvalidKey(f"{what}: not valid UTF-8 text") from exc
    if isinstance(material, bytes | bytearray | memoryview):
        return bytearray(material)
    raise InvalidKey(f"{what}: expected str or bytes, not {type(material).__name__}")


def _check_material(keyformat: KeyFormat, buffer: bytearray, source: str) -> None:
    """Raise InvalidKey (and wipe ``buffer``) unless it fits ``keyformat``."""
    problem = _material_problem(keyformat, buffer)
    if problem is not None:
        _wipe(buffer)
        raise InvalidKey(f"{source}: {problem}", subject=source)


def _material_problem(keyformat: KeyFormat, buffer: bytearray) -> str | None:
    size = len(buffer)
    if keyformat == "raw":
        if size != WRAPPING_KEY_LEN:
            return f"a raw key is exactly {WRAPPING_KEY_LEN} bytes, got {size}"
    elif keyformat == "hex":
        if size != 2 * WRAPPING_KEY_LEN:
            return f"a hex key is exactly {2 * WRAPPING_KEY_LEN} hex characters, got {size}"
        if any(byte not in _HEX_DIGITS for byte in buffer):
            return "a hex key holds only the characters 0-9, a-f and A-F"
    elif keyformat == "passphrase":
        if not MIN_PASSPHRASE_LEN <= size <= MAX_PASSPHRASE_LEN:
            return (f"a passphrase is {MIN_PASSPHRASE_LEN} to {MAX_PASSPHRASE_LEN} bytes, "
                    f"got {size}")
        if b"\n" in buffer or b"\0" in buffer:
            return "a passphrase cannot contain a newline or NUL byte (ZFS would cut it there)"
    else:
        return f"unknown key format {keyformat!r} (use hex, raw or passphrase)"
    return None


class Key:
    """Encryption key material for one ``keyformat``; wiped when closed.

    Build one with ``Key.hex``, ``Key.raw``, ``Key.passphrase``,
    ``Key.from_file``, ``Key.from_stdin`` or ``Key.prompt``; use it in a
    ``with`` block so that it is wiped as soon as the block ends.
    """

    __slots__ = ("_buffer", "_closed", "format")

    def __init__(self, keyformat: KeyFormat, material: bytearray, *, source: str = "key") -> None:
        """Take ownership of ``material`` (it is wiped on close); prefer the classmethods."""
        if not isinstance(material, bytearray):
            raise TypeError("Key() takes a bytearray it will own; use Key.hex/raw/passphrase")
        _check_material(keyformat, material, source)
        self.format: KeyFormat = keyformat
        self._buffer = material
        self._closed = False

    # -- constructors -------------------------------------------------------

    @classmethod
    def hex(cls, material: str | bytes | bytearray) -> Key:
        """A hex key: 64 hex characters, or 32 bytes that are hex-encoded here."""
        buffer = _as_buffer(material, "hex key")
        if len(buffer) == WRAPPING_KEY_LEN and not isinstance(material, str):
            encoded = bytearray(buffer.hex().encode())
            _wipe(buffer)
            buffer = encoded
        return cls("hex", buffer, source="hex key")

    @classmethod
    def raw(cls, material: bytes | bytearray) -> Key:
        """A raw key: exactly 32 bytes."""
        if isinstance(material, str):
            raise InvalidKey("raw key: expected 32 bytes, not text (use Key.hex for hex text)")
        return cls("raw", _as_buffer(material, "raw key"), source="raw key")

    @classmethod
    def passphrase(cls, material: str | bytes | bytearray) -> Key:
        """A passphrase: 8 to 512 bytes, without newline or NUL."""
        return cls("passphrase", _as_buffer(material, "passphrase"), source="passphrase")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], keyformat: KeyFormat | None = None) -> Key:
        """Read a key file the way ``keylocation=file://`` would.

        With ``keyformat`` None the format is inferred: exactly 32 bytes is
        raw, 64 hex characters (with an optional newline) is hex, anything
        else is a passphrase (first line).  Pass ``keyformat`` when the file
        could be read more than one way.
        """
        source = f"key file {os.fspath(path)!r}"
        try:
            with open(path, "rb", buffering=0) as handle:
                buffer = _read_all(handle.fileno(), limit=MAX_PASSPHRASE_LEN + 2)
        except OSError as exc:
            raise InvalidKey(f"{source}: cannot read it ({exc.strerror})", subject=source) from exc
        return cls._from_read_bytes(buffer, keyformat, source)

    @classmethod
    def from_stdin(cls, keyformat: KeyFormat | None = None) -> Key:
        """Read key material from standard input (same rules as ``from_file``)."""
        buffer = _read_all(sys.stdin.fileno(), limit=MAX_PASSPHRASE_LEN + 2)
        return cls._from_read_bytes(buffer, keyformat, "key on stdin")

    @classmethod
    def from_stdin_line(cls, keyformat: KeyFormat) -> Key:
        """Read one key from stdin as ``zfs`` reads ``keylocation=prompt`` from a pipe.

        hex and passphrase: one line, without its newline; raw: up to 33 bytes
        (ZFS reads one more than a raw key's 32 to notice a longer one).  Only
        that much is consumed, so that a second key can follow (``zfs
        change-key -l`` reads the current key, then the new one).
        """
        buffer = _read_line(sys.stdin.fileno(), raw=keyformat == "raw")
        return cls(keyformat, buffer, source="key on stdin")

    @classmethod
    def prompt(cls, keyformat: KeyFormat = "passphrase", *, confirm: bool = False,
               label: str = "") -> Key:
        """Ask on the terminal with echo off (hex or passphrase; raw keys cannot be typed)."""
        if keyformat == "raw":
            raise InvalidKey("prompt: raw keys cannot be entered on a terminal")
        what = "passphrase" if keyformat == "passphrase" else "hex key"
        suffix = f" for {label}" if label else ""
        first = _read_tty_line(f"Enter {what}{suffix}: ")
        if confirm:
            second = _read_tty_line(f"Re-enter {what}{suffix}: ")
            same = first == second
            _wipe(second)
            if not same:
                _wipe(first)
                raise InvalidKey("prompt: the two entries do not match")
        return cls(keyformat, first, source=f"{what} from the terminal")

    @classmethod
    def _from_read_bytes(cls, buffer: bytearray, keyformat: KeyFormat | None, source: str) -> Key:
        if keyformat is None:
            keyformat = _infer_format(buffer)
        if keyformat != "raw":
            _strip_line(buffer)
        return cls(keyformat, buffer, source=source)

    # -- use ------------------------------------------------------------------

    def material(self) -> memoryview:
        """The bytes ZFS reads on stdin, as a read-only view of the key's buffer.

        The view becomes invalid when the key is closed; do not keep it.
        """
        if self._closed:
            raise InputError("this Key was closed and its material wiped")
        return memoryview(self._buffer).toreadonly()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Overwrite the key material with zeros; the key cannot be used afterwards."""
        if not self._closed:
            _wipe(self._buffer)
            self._closed = True

    def __enter__(self) -> Key:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()

    # -- refusals: a key must not leak through copies, pickles or text ---------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "redacted"
        return f"<Key format={self.format} {state}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def _refuse(self, *args: Any) -> NoReturn:
        raise TypeError("a Key cannot be copied, pickled or compared; pass the same object")

    __copy__ = _refuse
    __deepcopy__ = _refuse
    __reduce__ = _refuse
    __reduce_ex__ = _refuse
    __getstate__ = _refuse

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def _infer_format(buffer: bytearray) -> KeyFormat:
    if len(buffer) == WRAPPING_KEY_LEN:
        return "raw"
    end = len(buffer) - 1 if buffer.endswith(b"\n") else len(buffer)
    is_hex = end == 2 * WRAPPING_KEY_LEN and all(buffer[i] in _HEX_DIGITS for i in range(end))
    return "hex" if is_hex else "passphrase"


def _strip_line(buffer: bytearray) -> None:
    """Keep the first line without its newline, as ZFS's getline() does."""
    end = buffer.find(b"\n")
    if end != -1:
        for index in range(end, len(buffer)):
            buffer[index] = 0
        del buffer[end:]


def _read_all(fd: int, *, limit: int) -> bytearray:
    """Read up to ``limit`` bytes from ``fd`` straight into a fresh buffer.

    ``readinto`` fills our own bytearray, so no immutable copy of the key is
    left behind for the garbage collector.
    """
    buffer = bytearray(limit)
    filled = 0
    with open(fd, "rb", buffering=0, closefd=False) as stream:
        view = memoryview(buffer)
        while filled < limit:
            count = stream.readinto(view[filled:])
            if not count:
                break
            filled += count
        view.release()
    del buffer[filled:]
    return buffer


def _read_line(fd: int, *, raw: bool) -> bytearray:
    """One key from ``fd``, byte by byte so that nothing after it is consumed.

    Raw: up to WRAPPING_KEY_LEN + 1 bytes; otherwise up to a newline (dropped)
    or MAX_PASSPHRASE_LEN + 1 bytes, enough for the length check to refuse.
    """
    limit = WRAPPING_KEY_LEN + 1 if raw else MAX_PASSPHRASE_LEN + 1
    buffer = bytearray(limit)  # filled in place: no resized copies of the key left behind
    filled = 0
    with open(fd, "rb", buffering=0, closefd=False) as stream:
        view = memoryview(buffer)
        while filled < limit:
            if not stream.readinto(view[filled:filled + 1]):
                break
            if buffer[filled] == ord("\n") and not raw:
                buffer[filled] = 0
                break
            filled += 1
        view.release()
    del buffer[filled:]
    return buffer


def _read_tty_line(prompt: str) -> bytearray:
    """Read one line from /dev/tty with echo off, byte by byte into a buffer."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise InvalidKey("prompt: no terminal to ask on (use --key-file or --key-stdin)") from exc
    try:
        old = termios.tcgetattr(fd)
        new = termios.tcgetattr(fd)
        new[3] &= ~(termios.ECHO | termios.ECHONL)
        os.write(fd, prompt.encode())
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        try:
            buffer = bytearray()
            while len(buffer) <= MAX_PASSPHRASE_LEN:
                byte = os.read(fd, 1)
                if byte in (b"", b"\n", b"\r"):
                    break
                buffer += byte
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, old)
            os.write(fd, b"\n")
        return buffer
    finally:
        os.close(fd)
