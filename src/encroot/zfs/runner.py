"""The one door through which encroot starts ``zfs`` and ``zpool``.

A ``Command`` is plain data: an argv tuple (never a shell string), whether it
changes ZFS state, and whether its stdin carries a secret.  A ``Runner``
executes commands; the real one uses ``subprocess`` with argv lists, tests
hand in another.  Nothing here knows ZFS's semantics: parsing and error
translation live beside it.

Secrets: a key reaches ``zfs`` only as bytes written to the child's stdin
pipe from the key's own buffer.  It is never part of argv (``/proc/PID/
cmdline``), the environment (``/proc/PID/environ``), a file, or the
printable form of a command (``Command.shell_line`` shows ``< <secret>``).
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import IO, ClassVar, NoReturn, Protocol

from ..errors import InputError, ZfsUnavailable
from ..records import field, record
from .become import become, find_program
from .ssh import SshTarget, ssh_argv

__all__ = [
    "Binaries",
    "Command",
    "Result",
    "Runner",
    "SubprocessRunner",
    "find_binaries",
]


@record(frozen=True)
class Binaries:
    """Absolute paths of the zfs and zpool programs."""

    zfs: str
    zpool: str


def find_binaries(env: Mapping[str, str] | None = None) -> Binaries:
    """Locate zfs and zpool (``become.find_program``: ``$ENCROOT_ZFS``/``$ENCROOT_ZPOOL``,
    then $PATH, then the sbin directories).

    Raises:
        ZfsUnavailable: a program cannot be found or is not executable.
    """
    return Binaries(zfs=find_program("zfs", env), zpool=find_program("zpool", env))


@record(frozen=True)
class Command:
    """One zfs/zpool invocation, as data.

    Attributes:
        argv: the full argument vector, program first.
        mutates: True when the command changes pool or dataset state (what a
            dry run never reaches, and what ``FaultInjector`` counts).
        secret_stdin: True when stdin carries key material.
        key_fd: a descriptor of this process, the read end of a pipe that holds
            key material, which the child inherits under the same number
            (``zfs receive -o keylocation=file:///dev/fd/N``, whose stdin is the
            stream); None for none.  Never with ``remote`` (a descriptor does
            not cross ssh).
        remote: the host ``argv`` runs on, over ssh (``encroot.zfs.ssh``); None
            for this host.  ``argv`` is then the remote argv and
            ``process_argv`` the local ``ssh ...`` that runs it.
    """

    argv: tuple[str, ...]
    mutates: bool = False
    secret_stdin: bool = False
    key_fd: int | None = None
    remote: SshTarget | None = None

    def __post_init__(self) -> None:
        if self.remote is not None and self.key_fd is not None:
            raise InputError("a key descriptor cannot be passed over ssh; send the key on stdin")

    @property
    def process_argv(self) -> tuple[str, ...]:
        """What this host starts: ``argv``, or the ssh command that runs it remotely."""
        return self.argv if self.remote is None else ssh_argv(self.remote, self.argv)

    def shell_line(self) -> str:
        """A copy-pasteable shell line; a secret shows as ``< <secret>`` (``N< <secret>``).

        A remote command shows the whole ``ssh ... 'LC_ALL=C ... zfs ...'`` line."""
        line = shlex.join(self.process_argv)
        if self.key_fd is not None:
            line += f" {self.key_fd}< <secret>"
        return f"{line} < <secret>" if self.secret_stdin else line

    def __str__(self) -> str:
        return self.shell_line()


@record(frozen=True)
class Result:
    """What a finished command left behind."""

    command: Command
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Runner(Protocol):
    """Runs a Command to completion.

    ``stdin`` is written to the child's standard input and then closed; pass
    a key's ``material()`` view so that no copy of the secret is made.
    ``stdin_fd`` is a stream the child reads as its stdin (a send stream for
    ``zfs receive``); the real runner relays it through a pipe it owns, so
    that the child's stream ends when encroot does.
    """

    def run(self, command: Command, *, stdin: bytes | memoryview | None = None,
            stdin_fd: int | None = None, timeout: float | None = None) -> Result: ...

    def pipe(self, sender: Command, receiver: Command, *,
             progress: Callable[[int], None] | None = None) -> tuple[Result, Result]:
        """Run ``sender | receiver``; ``progress`` is told how many bytes went through."""
        ...

    def replace(self, command: Command) -> NoReturn:
        """Replace this process with ``command`` (a drop-in: ``exec``, never returns)."""
        ...


@record
class SubprocessRunner:
    """Runs commands as child processes with argv lists, never through a shell.

    The child gets the parent's environment with ``LC_ALL=C`` so that ZFS's
    messages are the English texts the error translator matches; ``replace``
    (the drop-in) keeps the caller's locale instead, since there zfs speaks
    to the user, not to encroot.

    ``on_start`` is called with each started process before its stdin is
    written: the seam tests use to inspect a live ``zfs`` (its argv and
    environment) or to inject a failure at that point.
    """

    extra_env: Mapping[str, str] = field(default_factory=dict)
    on_start: Callable[[Command, subprocess.Popen[bytes]], None] | None = None
    # Commands may run from several threads at once (``Zfs.concurrently``): each run
    # has its own process, pipes and reader threads, and nothing here is shared.
    concurrent: ClassVar[bool] = True

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"LC_ALL": "C", "LANG": "C"})
        env.update(self.extra_env)
        return env

    def run(self, command: Command, *, stdin: bytes | memoryview | None = None,
            stdin_fd: int | None = None, timeout: float | None = None) -> Result:
        """Run ``command`` to its end; see ``Runner``.

        With ``stdin_fd`` the child does not get that descriptor: it reads a
        pipe whose only write end is this process's, and encroot relays the
        stream into it (``splice``).  So a child never outlives encroot as a
        writer: when encroot dies, even by SIGKILL, the kernel closes the
        write end and the child sees its stream end (``zfs receive`` fails as
        on a cut stream and ZFS undoes the partial receive), instead of going
        on reading the caller's stream into a state no one will finish.
        """
        if stdin is not None and stdin_fd is not None:
            raise InputError("give stdin bytes or a stdin descriptor, not both")
        if stdin_fd is not None:
            return self._run_relayed(command, stdin_fd, timeout)
        child_stdin = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                command.process_argv,
                stdin=child_stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environment(),
                pass_fds=_passed(command),
            )
        except OSError as exc:
            raise ZfsUnavailable(f"{command.argv[0]}: cannot start it ({exc.strerror})") from exc
        try:
            if self.on_start is not None:
                self.on_start(command, process)
            # communicate() writes any bytes-like object; a memoryview keeps the key uncopied
            out, err = process.communicate(stdin, timeout=timeout)  # type: ignore[arg-type]
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            return Result(command, -9, out.decode(errors="replace"),
                          err.decode(errors="replace") + f"\ntimed out after {timeout} s")
        except BaseException:
            process.kill()
            process.wait()
            raise
        return Result(command, process.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"))

    def _run_relayed(self, command: Command, source: int, timeout: float | None) -> Result:
        read_end, write_end = os.pipe()  # not inheritable: only the child gets read_end
        try:
            process = subprocess.Popen(command.process_argv, stdin=read_end, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=self._environment())
        except OSError as exc:
            os.close(write_end)
            raise ZfsUnavailable(f"{command.argv[0]}: cannot start it ({exc.strerror})") from exc
        finally:
            os.close(read_end)
        outputs = _drain({"out": process.stdout, "err": process.stderr})
        try:
            if self.on_start is not None:
                self.on_start(command, process)
            _relay(source, write_end, None, stop_when_unread=True)
        except BrokenPipeError:
            pass  # the child stopped reading; its exit status says why
        except BaseException:
            process.kill()
            raise
        finally:
            os.close(write_end)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for thread in outputs.values():
                thread.join()
        return Result(command, process.returncode, outputs["out"].text, outputs["err"].text)

    def pipe(self, sender: Command, receiver: Command, *,
             progress: Callable[[int], None] | None = None) -> tuple[Result, Result]:
        """Run ``sender | receiver`` (``zfs send | zfs receive``) and relay the stream.

        When one side runs over ssh, the two processes are joined by an OS pipe
        instead (``encroot.zfs.direct``): the stream never passes through encroot,
        and progress comes from ``zfs send -v -P``.

        encroot relays the bytes itself (with ``splice`` where the kernel has it,
        so nothing is copied through Python) to count them for the progress
        display.  If the receiver dies, the sender is killed; if the sender
        dies, the receiver sees the stream end and fails as ZFS does on a cut
        stream.
        """
        env = self._environment()
        if sender.remote is not None or receiver.remote is not None:
            from .direct import direct_pipe

            return direct_pipe(sender, receiver, env=env, progress=progress,
                               on_start=self.on_start)
        try:
            send = subprocess.Popen(sender.argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            raise ZfsUnavailable(f"{sender.argv[0]}: cannot start it ({exc.strerror})") from exc
        try:
            receive = subprocess.Popen(receiver.argv, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                       pass_fds=_passed(receiver))
        except OSError as exc:
            send.kill()
            send.wait()
            raise ZfsUnavailable(f"{receiver.argv[0]}: cannot start it ({exc.strerror})") from exc
        outputs = _drain({"send-err": send.stderr, "recv-out": receive.stdout,
                          "recv-err": receive.stderr})
        try:
            for process, command in ((send, sender), (receive, receiver)):
                if self.on_start is not None:
                    self.on_start(command, process)
            assert send.stdout is not None and receive.stdin is not None
            _relay(send.stdout.fileno(), receive.stdin.fileno(), progress)
        except BrokenPipeError:
            send.kill()
        except BaseException:
            send.kill()
            receive.kill()
            raise
        finally:
            for stream in (send.stdout, receive.stdin):
                if stream is not None:
                    stream.close()
            send.wait()
            receive.wait()
            for thread in outputs.values():
                thread.join()
        return (Result(sender, send.returncode, "", outputs["send-err"].text),
                Result(receiver, receive.returncode, outputs["recv-out"].text,
                       outputs["recv-err"].text))


    def replace(self, command: Command) -> NoReturn:
        """Become ``command`` through ``execve``: the same pid, stdin, stdout and stderr.

        The environment is the caller's own (locale included) plus ``extra_env``.
        Python ignores SIGPIPE and SIGXFSZ; ignored signals survive ``exec``, so
        they are reset to their defaults first (as ``subprocess`` does for its
        children), and zfs dies of a closed pipe as it would when started by a
        shell.

        Raises:
            ZfsUnavailable: the program cannot be executed (this process goes on).
        """
        become(command.argv, self.extra_env)


def _passed(command: Command) -> tuple[int, ...]:
    """The descriptors a child inherits beyond stdio: the key pipe, if any."""
    return () if command.key_fd is None else (command.key_fd,)


class _Reader(threading.Thread):
    """Reads one output of a child to its end, so that no pipe fills up and blocks."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.text = ""

    def run(self) -> None:
        self.text = self.stream.read().decode(errors="replace")
        self.stream.close()


def _drain(streams: Mapping[str, IO[bytes] | None]) -> dict[str, _Reader]:
    readers = {}
    for label, stream in streams.items():
        assert stream is not None
        readers[label] = _Reader(stream)
        readers[label].start()
    return readers


RELAY_CHUNK = 1 << 20


def widen_pipes(*fds: int) -> None:
    """Give the relay's pipes ``RELAY_CHUNK`` bytes of buffer instead of Linux's 64 KiB.

    With the default, every ``splice`` moves at most 64 KiB and the sender, encroot
    and the receiver take turns sixteen times per MiB; measured under the lab's
    emulation on a 512 MiB raw stream, the relay then took 3 to 8% longer than
    ``zfs send | zfs receive``, and as long with 1 MiB pipes.  1 MiB is
    ``/proc/sys/fs/pipe-max-size``'s default, so no privilege is needed; where
    the call is refused (a lower limit, a descriptor that is no pipe, such as a
    stream read from a file) that descriptor stays as it is.
    """
    import fcntl

    size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if size is None:
        return
    for fd in fds:
        try:
            fcntl.fcntl(fd, size, RELAY_CHUNK)
        except OSError:
            continue


def _relay(source: int, target: int, progress: Callable[[int], None] | None, *,
           stop_when_unread: bool = False) -> None:
    """Move every byte from ``source`` to ``target``; report counts to ``progress``.

    ``stop_when_unread``: ``target`` is a pipe; return as soon as its reader
    is gone, even while ``source`` has nothing to read (a stalled sender must
    not keep encroot waiting for a child that already exited).
    """
    widen_pipes(source, target)
    splice = getattr(os, "splice", None)
    poller = None
    if stop_when_unread:
        poller = select.poll()
        poller.register(source, select.POLLIN)
        poller.register(target, 0)  # POLLERR: the read end was closed
    while True:
        if poller is not None:
            events = dict(poller.poll())
            if target in events:
                return
        if splice is not None:
            try:
                moved = splice(source, target, RELAY_CHUNK)
            except BrokenPipeError:
                raise
            except BlockingIOError:  # a non-blocking source with nothing to read yet
                if poller is None:
                    raise
                continue
            except OSError:  # a kernel or descriptor kind without splice: copy instead
                splice = None
                continue
        else:
            try:
                chunk = os.read(source, RELAY_CHUNK)
            except BlockingIOError:
                if poller is None:
                    raise
                continue
            moved = len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(target, view):]
        if moved == 0:
            return
        if progress is not None:
            progress(moved)
