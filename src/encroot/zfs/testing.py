"""Runners for tests of code that drives ZFS: record commands, inject failures.

These replace the process runner (``Zfs(runner=...)``), so a test observes and
breaks encroot's executors at the one door to ZFS instead of patching them.
They are for tests of encroot's decisions only: a fake answer is never proof
that a ZFS operation works (that is what the lab's real-ZFS tests are for).

* ``RecordingRunner`` records every command with the stdin it got and answers
  each from a ``respond`` function; an exec (``replace``, a drop-in) is
  recorded in ``replaced`` and raises ``Replaced``, since it never returns.
* ``FaultInjector`` wraps another runner and breaks the run at a chosen
  point: ``kill_before=N`` makes the N-th state-changing command (counting
  from 1) and every command after it raise ``Killed``, as if the process had
  died there (later commands, ``finally`` blocks included, change nothing);
  ``fail={K: message}`` makes the K-th state-changing command fail with
  exit status 1 and ZFS's ``message`` on stderr, as ZFS would.

Example::

    zfs = Zfs(runner=FaultInjector(RecordingRunner(), kill_before=3), binaries=...)
    with pytest.raises(Killed):
        execute(zfs, ...)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NoReturn

from ..records import field, record
from .runner import Command, Result, Runner

__all__ = ["FaultInjector", "Killed", "RecordingRunner", "Replaced", "Responder"]

Responder = Callable[[Command], tuple[int, str, str]]


def _succeed(command: Command) -> tuple[int, str, str]:
    del command
    return 0, "", ""


@record
class RecordingRunner:
    """Records each command and the stdin it got; answers with ``respond``.

    Attributes:
        respond: returns ``(exit status, stdout, stderr)`` for a command.
        calls: every command run, with its stdin bytes (None without stdin).
        stdin_fds: the descriptor each command was handed as stdin, if any.
        replaced: every command the process was to become (``replace``).
    """

    respond: Responder = _succeed
    calls: list[tuple[Command, bytes | None]] = field(default_factory=list)
    stdin_fds: list[int | None] = field(default_factory=list)
    replaced: list[Command] = field(default_factory=list)

    def run(self, command: Command, *, stdin: bytes | memoryview | None = None,
            stdin_fd: int | None = None, timeout: float | None = None) -> Result:
        self.calls.append((command, None if stdin is None else bytes(stdin)))
        self.stdin_fds.append(stdin_fd)
        code, out, err = self.respond(command)
        return Result(command, code, out, err)

    def pipe(self, sender: Command, receiver: Command, *,
             progress: Callable[[int], None] | None = None) -> tuple[Result, Result]:
        results = []
        for command in (sender, receiver):
            self.calls.append((command, None))
            self.stdin_fds.append(None)
            code, out, err = self.respond(command)
            results.append(Result(command, code, out, err))
        return results[0], results[1]

    def replace(self, command: Command) -> NoReturn:
        """Records ``command`` in ``replaced`` and raises ``Replaced`` (an exec never returns)."""
        self.replaced.append(command)
        raise Replaced(command=command)

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        """The argv of every command run, in order."""
        return [command.argv for command, _ in self.calls]


class Killed(BaseException):
    """The simulated death of the process at a step.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except
    Exception`` in the code under test can clean up after it.
    """

    def __init__(self, *, command: Command, step: int) -> None:
        super().__init__(f"killed before state-changing command {step}: {command.shell_line()}")
        self.command = command
        self.step = step


class Replaced(BaseException):
    """The simulated ``exec``: the process became ``command`` and runs no more of its own code.

    A ``BaseException`` for the same reason as ``Killed``.
    """

    def __init__(self, *, command: Command) -> None:
        super().__init__(f"replaced by: {command.shell_line()}")
        self.command = command


@record
class FaultInjector:
    """Passes commands to ``inner`` until the chosen fault; see the module docstring.

    Attributes:
        inner: the runner that answers (a ``RecordingRunner``, or a real one).
        kill_before: the state-changing command (1-based) before which the
            process "dies"; None for no kill.
        fail: state-changing command number -> the ZFS message it fails with.
        changes: how many state-changing commands were passed to ``inner``.
        killed: set once the kill happened; every later command raises too.
    """

    inner: Runner
    kill_before: int | None = None
    fail: Mapping[int, str] = field(default_factory=dict)
    changes: int = 0
    killed: Killed | None = None

    def _gate(self, command: Command) -> Result | None:
        """None to run ``command``; a failed Result to answer instead; raises when killed."""
        if self.killed is not None:
            raise Killed(command=command, step=self.killed.step)
        if not command.mutates:
            return None
        number = self.changes + 1
        if self.kill_before is not None and number >= self.kill_before:
            self.killed = Killed(command=command, step=number)
            raise self.killed
        self.changes = number
        message = self.fail.get(number)
        if message is not None:
            return Result(command, 1, "", message if message.endswith("\n") else message + "\n")
        return None

    def run(self, command: Command, *, stdin: bytes | memoryview | None = None,
            stdin_fd: int | None = None, timeout: float | None = None) -> Result:
        failed = self._gate(command)
        if failed is not None:
            return failed
        return self.inner.run(command, stdin=stdin, stdin_fd=stdin_fd, timeout=timeout)

    def pipe(self, sender: Command, receiver: Command, *,
             progress: Callable[[int], None] | None = None) -> tuple[Result, Result]:
        self._gate(sender)
        failed = self._gate(receiver)
        if failed is not None:
            return Result(sender, 0, "", ""), failed
        return self.inner.pipe(sender, receiver, progress=progress)

    def replace(self, command: Command) -> NoReturn:
        """Passes the exec to ``inner`` unless the process has "died" already.

        The exec is the process's last act, so it is not counted as a change:
        neither ``kill_before`` nor ``fail`` lands on it.
        """
        if self.killed is not None:
            raise Killed(command=command, step=self.killed.step)
        self.inner.replace(command)
