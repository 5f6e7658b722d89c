"""A transfer with a side over ssh: ``zfs send | ssh HOST zfs receive``, joined by an OS pipe.

Locally encroot relays the stream itself (``splice``) to count its bytes.  Across
hosts the stream is the bulk of the work and ssh already copies it once, so the
two processes are joined directly: the sender's stdout *is* the receiver's
stdin, and not a byte passes through encroot.  Progress comes from the sender
instead: ``zfs send -v -P`` prints, once a second on stderr, a line
``HH:MM:SS<TAB>BYTES<TAB>DATASET@SNAP`` with the bytes sent of the dataset it
is on (``send_progress_thread()`` in ``lib/libzfs/libzfs_sendrecv.c``, 2.1 to
2.4); ``SendProgress`` turns those into increments across the datasets of a
``-R`` stream.  Over ssh the remote sender's stderr comes back the same way.

Each process of the pair dies with encroot (``PR_SET_PDEATHSIG``): killed
encroot, even by SIGKILL, takes its ``zfs send`` and its ssh client with it;
ssh's master then closes the channel, the remote ``zfs receive`` sees its
stream end (a ``-s`` receive keeps its resume token) and a remote ``zfs send``
its reader gone.  No transfer goes on with nobody to check it.
"""

from __future__ import annotations

import ctypes
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import IO

from ..errors import ZfsUnavailable
from ..records import field, record
from .runner import Command, Result, _drain

__all__ = ["PROGRESS_FLAGS", "SendProgress", "direct_pipe", "is_progress_line"]

# Inserted after "send" by Zfs when the pipe is direct, so that -n shows what runs.
PROGRESS_FLAGS = ("-v", "-P")

_PROGRESS = re.compile(r"(\d\d+):(\d\d):(\d\d)\t(\d+)\t(\S.*)")
# -P's header lines before the data ("full", "incremental", "size", token contents).
_HEADER = re.compile(r"(full|incremental|size)\t|resume token contents:|\t")

PR_SET_PDEATHSIG = 1


def is_progress_line(line: str) -> bool:
    """A line ``zfs send -v -P`` prints about its own progress (not an error)."""
    return bool(_PROGRESS.fullmatch(line) or _HEADER.match(line))


@record
class SendProgress:
    """Turns ``zfs send -v -P`` lines into byte increments.

    Each line gives the bytes sent so far *of one dataset*; a ``-R`` stream
    goes through its datasets one after the other.  ``advance`` is called with
    what is new since the last line.
    """

    advance: Callable[[int], None] | None = None
    finished: int = 0  # bytes of the datasets left behind
    current: str = ""
    current_bytes: int = 0
    kept: list[str] = field(default_factory=list)  # every other line, for error messages

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        match = _PROGRESS.fullmatch(line)
        if match is None:
            if line.strip() and not _HEADER.match(line):
                self.kept.append(line)
            return
        sent, name = int(match.group(4)), match.group(5)
        if name != self.current:
            self.finished += self.current_bytes
            self.current, self.current_bytes = name, 0
        if sent > self.current_bytes:
            delta = sent - self.current_bytes
            self.current_bytes = sent
            if self.advance is not None:
                self.advance(delta)

    @property
    def total(self) -> int:
        return self.finished + self.current_bytes


_prctl: Callable[[int, int], int] | None = None


def _die_with_parent() -> None:
    """In the child, before exec: be killed when encroot dies (Linux; else nothing)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _load_prctl() -> None:
    """Resolve ``prctl`` in the parent, so the child only calls it."""
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = None


def direct_pipe(sender: Command, receiver: Command, *, env: Mapping[str, str],
                progress: Callable[[int], None] | None = None,
                on_start: Callable[[Command, subprocess.Popen[bytes]], None] | None = None,
                ) -> tuple[Result, Result]:
    """Run ``sender | receiver`` joined by a pipe; the sender's stderr feeds ``progress``.

    If the receiver dies, the sender's next write fails (SIGPIPE) and it ends;
    if the sender dies, the receiver sees its stream end.

    Raises:
        ZfsUnavailable: a program could not be started.
    """
    _load_prctl()
    try:
        send = subprocess.Popen(sender.process_argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env),
                                preexec_fn=_die_with_parent)
    except OSError as exc:
        raise ZfsUnavailable(f"{sender.process_argv[0]}: cannot start it "
                             f"({exc.strerror})") from exc
    assert send.stdout is not None and send.stderr is not None
    try:
        receive = subprocess.Popen(receiver.process_argv, stdin=send.stdout,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=dict(env), preexec_fn=_die_with_parent)
    except OSError as exc:
        send.kill()
        send.wait()
        raise ZfsUnavailable(f"{receiver.process_argv[0]}: cannot start it "
                             f"({exc.strerror})") from exc
    finally:
        send.stdout.close()  # only the receiver reads the stream now
    outputs = _drain({"recv-out": receive.stdout, "recv-err": receive.stderr})
    parsed = SendProgress(progress)
    try:
        for process, command in ((send, sender), (receive, receiver)):
            if on_start is not None:
                on_start(command, process)
        _read_lines(send.stderr, parsed)
    except BaseException:
        send.kill()
        receive.kill()
        raise
    finally:
        send.wait()
        receive.wait()
        for thread in outputs.values():
            thread.join()
    return (Result(sender, send.returncode, "", "\n".join(parsed.kept)),
            Result(receiver, receive.returncode, outputs["recv-out"].text,
                   outputs["recv-err"].text))


def _read_lines(stream: IO[bytes], parsed: SendProgress) -> None:
    with stream:
        for raw in stream:
            parsed.feed(raw.decode(errors="replace"))
