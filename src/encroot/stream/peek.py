"""Read a stream's header from a file descriptor and leave the stream for ``zfs receive``.

``peek_stream`` reads the header of a stream on a file descriptor and leaves
the stream for ``zfs receive`` untouched: ``pread`` on a regular file,
``tee(2)`` on a pipe (duplicating pipe contents without consuming them).
Only when neither works (a socket or terminal, or a header larger than the
pipe can hold) is the header consumed and the stream relayed to ZFS through
a new pipe with ``splice(2)``, which moves data inside the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import stat
import threading
import time
from collections.abc import Callable

from ..errors import StreamError
from ..records import field, record
from .header import BEGIN_RECORD_SIZE, StreamInfo, _NeedMore, parse_header

__all__ = ["PeekedStream", "peek_stream"]


F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
PIPE_TARGET_SIZE = 16 << 20
RELAY_CHUNK = 1 << 20


@record
class PeekedStream:
    """A stream whose header was read, and the descriptor ``zfs receive`` must read.

    ``method`` is ``pread`` (regular file), ``tee`` (pipe) or ``relay``.
    With a relay, call ``finish()`` after ZFS exits; it returns the number of
    bytes relayed and raises the relay's error, if any.
    """

    info: StreamInfo
    fd: int
    method: str
    _relay: _Relay | None = field(default=None, repr=False)

    def finish(self) -> int:
        return self._relay.finish() if self._relay is not None else 0


def peek_stream(fd: int) -> PeekedStream:
    """Read the header of the stream on ``fd``, leaving the stream for ZFS where possible.

    Raises:
        StreamError: the header is truncated, corrupt, or not a stream.
    """
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return PeekedStream(_parse_growing(lambda size: _pread(fd, size)), fd, "pread")
    if stat.S_ISFIFO(mode):
        peeked = _peek_pipe(fd)
        if peeked is not None:
            return peeked
    return _relay_stream(fd)


def _parse_growing(read: Callable[[int], tuple[bytes, bool]]) -> StreamInfo:
    """Parse with as many bytes as needed; ``read(n)`` returns (bytes, at_end)."""
    need = BEGIN_RECORD_SIZE
    while True:
        data, at_end = read(need)
        try:
            return parse_header(data, complete=at_end)
        except _NeedMore as more:
            if more.size <= len(data):
                raise StreamError("corrupt stream header") from None
            need = more.size


def _pread(fd: int, size: int) -> tuple[bytes, bool]:
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = os.pread(fd, size - got, offset + got)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks), False


def _libc_tee() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        tee = libc.tee
    except (OSError, AttributeError):
        return None
    tee.restype = ctypes.c_ssize_t
    tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
    return tee


def _grow_pipe(fd: int, size: int) -> int:
    """Try to make the pipe hold ``size`` bytes; return what it holds now."""
    for wanted in (size, 1 << 20):
        try:
            return fcntl.fcntl(fd, F_SETPIPE_SZ, wanted)
        except OSError:
            continue
    return fcntl.fcntl(fd, F_GETPIPE_SZ)


def _peek_pipe(fd: int) -> PeekedStream | None:
    """Duplicate the pipe's contents with tee(2) until the header is complete.

    Returns None when the header does not fit in the pipe (then relay).
    """
    tee = _libc_tee()
    if tee is None:
        return None
    capacity = _grow_pipe(fd, PIPE_TARGET_SIZE)
    read_end, write_end = os.pipe()
    try:
        _grow_pipe(write_end, capacity)

        def read(size: int) -> tuple[bytes, bool]:
            if size > capacity:
                raise _TooBig
            return _tee_prefix(tee, fd, read_end, write_end, size)

        try:
            info = _parse_growing(read)
        except _TooBig:
            return None
        return PeekedStream(info, fd, "tee")
    finally:
        os.close(read_end)
        os.close(write_end)


class _TooBig(Exception):
    """The header is larger than the pipe can hold."""


def _tee_prefix(tee: Callable[[int, int, int, int], int], fd: int, read_end: int,
                write_end: int, size: int) -> tuple[bytes, bool]:
    """The first ``size`` bytes in pipe ``fd`` (fewer at EOF), without consuming them."""
    delay = 0.001
    while True:
        copied = tee(fd, write_end, size, 0)
        if copied < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err == errno.EAGAIN:  # a non-blocking pipe with nothing in it yet
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            raise StreamError(f"cannot read the stream: {os.strerror(err)}")
        data = _read_exactly(read_end, copied)
        if copied == 0 or len(data) >= size:
            return data, copied == 0
        if _writer_closed(fd):
            again = tee(fd, write_end, size, 0)
            more = _read_exactly(read_end, max(again, 0))
            return more, len(more) < size
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _writer_closed(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(event & select.POLLHUP for _, event in poller.poll(0))


class _Relay:
    """Feeds ZFS the consumed header, then the rest of the stream via splice(2)."""

    def __init__(self, source: int, header: bytes) -> None:
        self.read_end, self._write_end = os.pipe()
        _grow_pipe(self._write_end, 1 << 20)
        self._source, self._header = source, header
        self.relayed = 0
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="encroot-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            view = memoryview(self._header)
            while view:
                written = os.write(self._write_end, view)
                view = view[written:]
                self.relayed += written
            while True:
                moved = os.splice(self._source, self._write_end, RELAY_CHUNK)
                if moved == 0:
                    break
                self.relayed += moved
        except BrokenPipeError:
            pass  # ZFS stopped reading; its own exit status says why
        except OSError as exc:
            self.error = exc
        finally:
            os.close(self._write_end)

    def finish(self) -> int:
        """Wait for the relay to end; call after ZFS stopped reading.

        Our copy of the read end is closed first, so a relay still writing
        (ZFS stopped early) gets EPIPE instead of blocking forever.
        """
        os.close(self.read_end)
        self._thread.join(timeout=10)
        if self.error is not None:
            raise StreamError(f"relaying the stream failed: {self.error.strerror}")
        return self.relayed


def _relay_stream(fd: int) -> PeekedStream:
    buffer = bytearray()

    def read(size: int) -> tuple[bytes, bool]:
        while len(buffer) < size:
            chunk = os.read(fd, size - len(buffer))
            if not chunk:
                return bytes(buffer), True
            buffer.extend(chunk)
        return bytes(buffer), False

    info = _parse_growing(read)
    relay = _Relay(fd, bytes(buffer))
    return PeekedStream(info, relay.read_end, "relay", relay)
