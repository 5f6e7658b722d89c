"""The shape of a plan's step that carries its zfs commands, shared by the operations.

A step names its action (each operation's own enum, on which its executor
dispatches with a ``match`` mypy checks for completeness), what it acts on,
a line for people, and the state-changing ``Command``s it runs; ``-n`` and
``--json`` print those as shell lines (and argv), so that what a plan shows
is what runs.  Each operation subclasses ``CommandStep`` with its enum and
says there which of its steps' commands are exact and which the run decides
from what ZFS shows then.  (Rotation's ``RotationStep`` also carries the
channel program its journal steps send, and names a pool or a dataset: it
keeps its own shape.)
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

from .records import record
from .zfs import Command

__all__ = ["CommandStep"]

A = TypeVar("A", bound=Enum)


@record(frozen=True)
class CommandStep(Generic[A]):
    """One thing an executor does: ``action``, the ``dataset`` it acts on (a rename's
    source), ``detail`` for people (a rename's new name), and its ``commands`` in order
    (reads, which change nothing, are not listed)."""

    action: A
    dataset: str
    detail: str = ""
    commands: tuple[Command, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"action": self.action.value, "dataset": self.dataset, "detail": self.detail,
                "commands": [command.shell_line() for command in self.commands],
                "argv": [list(command.argv) for command in self.commands]}
