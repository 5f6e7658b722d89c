"""Recorded-commands golden files (``tests/data/*-commands.json``), shared by the tests of
receive, rotate and convert.

Each file maps a scenario's name to the lines its operation produced: every
command it ran, as a comparable shell line (``command_lines``), then its
outcome (``outcome``).  A test
compares one scenario with its recording (``Recording.check``); running the
test module as a program rewrites the file (``Recording.write``), which is
done only from a reviewed executor whose commands are meant to change.  Both
apply the same ``fixed`` patches (owner, clock, random ids), so that the
recording and the comparison see the same world.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from encroot.errors import EncrootError
from encroot.zfs.testing import RecordingRunner

__all__ = ["DATA", "Recording", "command_lines", "outcome", "with_stdin"]

DATA = Path(__file__).parent.parent / "data"


def _nothing(patch: pytest.MonkeyPatch) -> None:
    """No patches: the scenario's world is fixed by itself."""


@dataclass(frozen=True)
class Recording:
    """One golden file: its name under ``tests/data``, the scenarios, how one is recorded.

    Attributes:
        file: the file's name in ``tests/data``.
        scenarios: every scenario's name (the file's keys).
        record: runs one scenario; its lines (commands, then the outcome).
        fixed: applies the patches that make a run repeatable.
    """

    file: str
    scenarios: Iterable[str]
    record: Callable[[str], list[str]]
    fixed: Callable[[pytest.MonkeyPatch], None] = _nothing

    @property
    def path(self) -> Path:
        return DATA / self.file

    def names(self) -> list[str]:
        """The scenarios in the file's order (for ``pytest.mark.parametrize``)."""
        return sorted(self.scenarios)

    def check(self, name: str) -> None:
        """The scenario's lines now are the recorded ones (the patches already applied)."""
        assert self.record(name) == json.loads(self.path.read_text())[name]

    def write(self) -> None:
        """Record every scenario anew: only from a reviewed, unchanged executor."""
        with pytest.MonkeyPatch.context() as patch:
            self.fixed(patch)
            lines = {name: self.record(name) for name in self.names()}
        self.path.write_text(json.dumps(lines, indent=1) + "\n")


def with_stdin(line: str, stdin: bytes | None, secret: bool,
               text: Callable[[str], str] = lambda program: program) -> str:
    """``line``, followed by ``< program HASH`` when a channel program was its stdin
    (``text`` makes run-dependent parts of it constant first); keys stay unshown."""
    if stdin is None or secret:
        return line
    digest = hashlib.sha256(text(stdin.decode()).encode()).hexdigest()[:16]
    return f"{line} < program {digest}"


def command_lines(runner: RecordingRunner,
                  line: Callable[[str, bytes | None, bool], str] = with_stdin) -> list[str]:
    """Every command ``runner`` saw, as ``line`` writes it (shell line, stdin, secret)."""
    return [line(command.shell_line(), stdin, command.secret_stdin)
            for command, stdin in runner.calls]


def outcome(operation: Callable[[], object]) -> str:
    """Run ``operation``: a recording's last line, ``done`` or the class name of the
    ``EncrootError`` it raised (any other exception fails the test)."""
    try:
        operation()
    except EncrootError as exc:
        return type(exc).__name__
    return "done"
