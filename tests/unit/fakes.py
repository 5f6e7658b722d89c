"""A recording Runner for unit tests of command building (never proof that ZFS works)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from encroot.zfs import Binaries, Command, Result, Zfs

BINARIES = Binaries(zfs="/sbin/zfs", zpool="/sbin/zpool")

Responder = Callable[[Command], tuple[int, str, str]]


@dataclass
class RecordingRunner:
    """Records each command and the stdin it got; answers with ``respond``."""

    respond: Responder = lambda command: (0, "", "")
    calls: list[tuple[Command, bytes | None]] = field(default_factory=list)
    stdin_fds: list[int | None] = field(default_factory=list)

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

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [command.argv for command, _ in self.calls]


def make_zfs(respond: Responder | None = None, **options: object) -> tuple[Zfs, RecordingRunner]:
    runner = RecordingRunner() if respond is None else RecordingRunner(respond)
    return Zfs(runner=runner, binaries=BINARIES, **options), runner  # type: ignore[arg-type]
