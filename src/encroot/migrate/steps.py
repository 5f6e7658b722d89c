"""What a migration phase plan holds: transfers, steps, refusals (plain data).

``plan`` and ``finish`` build these (pure functions); ``-n`` prints them and
``--json`` emits them.  A ``Step`` names its ``MigrateAction`` and holds the
state-changing ``Command``s it runs, built with each side's ``ZfsCommands``
(``SideCommands``); a ``Transfer`` holds its ``zfs send`` and ``zfs receive``.
The executor (``run.execute``) dispatches on the action with a ``match`` whose
default is ``assert_never``, so mypy rejects an action without code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from ..progress import human_bytes
from ..records import field, record
from ..steps import CommandStep
from ..zfs import Command, SendSpec, ZfsCommands
from .model import MigrateRefused

__all__ = ["RECEIVE_OPTIONS", "Goal", "MigrateAction", "PhasePlan", "Refusal", "SideCommands",
           "Step", "Transfer", "human_bytes"]

RECEIVE_OPTIONS = ("-u", "-s")


@record(frozen=True)
class Refusal:
    """A failed precondition: what is wrong and the command that fixes it."""

    message: str
    fix: str = ""

    def text(self) -> str:
        return self.message + (f"; fix: {self.fix}" if self.fix else "")


@record(frozen=True)
class SideCommands:
    """The command builders of each side: SRC's (its snapshots, the sends) and DST's
    (the receives, cutover's steps); the same host's for a local migration."""

    source: ZfsCommands = field(default_factory=ZfsCommands)
    destination: ZfsCommands = field(default_factory=ZfsCommands)

    def pipeline(self, spec: SendSpec, target: str) -> tuple[Command, Command]:
        """SRC's ``zfs send`` and DST's ``zfs receive -u -s TARGET``, as
        ``Zfs.transfer`` builds them (``-v -P`` on the send when a side is remote)."""
        direct = self.source.remote is not None or self.destination.remote is not None
        return (self.source.send(spec, progress=direct),
                self.destination.receive(target, options=RECEIVE_OPTIONS))


@record(frozen=True)
class Transfer:
    """One ``zfs send | zfs receive -u -s`` pipeline.

    ``kind`` is ``tree`` (-R full), ``tree-incremental`` (-R -I),
    ``dataset`` (one dataset's first snapshot, or a clone stream),
    ``dataset-incremental`` (-I) or ``resume`` (-t).  ``commands``: the send
    and the receive the executor runs (``SideCommands.pipeline``).
    """

    kind: str
    source: str
    target: str
    spec: SendSpec
    estimate: int | None = None
    commands: tuple[Command, ...] = ()

    def pipeline(self) -> tuple[Command, Command]:
        """The send and the receive: the planned ones, else this host's."""
        if len(self.commands) == 2:
            return self.commands[0], self.commands[1]
        return SideCommands().pipeline(self.spec, self.target)

    def command(self) -> str:
        """The pipeline as a shell line (a remote side's command as its ssh line)."""
        send, receive = self.pipeline()
        return f"{send.shell_line()} | {receive.shell_line()}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "target": self.target,
                "estimated_bytes": self.estimate, "command": self.command(),
                "commands": [c.shell_line() for c in self.pipeline()],
                "argv": [list(c.argv) for c in self.pipeline()]}


class MigrateAction(StrEnum):
    """A step of a phase; the value is what ``-n`` prints (and equals it as text)."""

    SNAPSHOT = "snapshot"
    TRANSFER = "transfer"
    VERIFY_SNAPSHOTS = "verify-snapshots"
    LOAD_KEY = "load-key"
    MARK = "mark"
    INHERIT_KEY = "inherit-key"
    MOVE = "move"
    INHERIT = "inherit"
    DROP_STAGING = "drop-staging"
    COLD_START = "cold-start"
    COPY_ROOT_DATA = "copy-root-data"
    VERIFY_FILES = "verify-files"
    REIMPORT = "reimport"
    UNMARK = "unmark"


@record(frozen=True)
class Step(CommandStep[MigrateAction]):
    """One thing a phase's executor does (``encroot.steps.CommandStep``).

    ``argument`` is the action's second operand: a move's new name, or the
    property an ``inherit`` step resets.  The commands are exact (the executor
    runs them as they are) for SNAPSHOT, LOAD_KEY (none when the key was loaded
    as the step was planned), INHERIT_KEY, MOVE, INHERIT,
    DROP_STAGING and UNMARK.  Three hold what the run completes from what it
    reads then, with the same builders (``finish``): MARK's marker (set with SRC
    root's local properties in one ``zfs set``) names DST's device folders, from the
    ``zpool list`` that began the phase (the plan shows none);
    COLD_START's import takes a fresh temporary altroot and those folders, and
    mounts what ZFS shows mountable after the key is loaded (the plan shows the
    export, the import and the key); REIMPORT's import those folders.
    TRANSFER holds none: its pipelines are the plan's transfers, each with its
    commands; VERIFY_SNAPSHOTS, COPY_ROOT_DATA and VERIFY_FILES run no zfs command.
    """

    argument: str = ""

    @property
    def command(self) -> str:
        """The commands as one shell line (``&&`` between them)."""
        return " && ".join(command.shell_line() for command in self.commands)

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "command": self.command, "argument": self.argument}


@record(frozen=True)
class Goal:
    """The snapshot a phase sends up to; ``create`` when encroot must take it first."""

    name: str
    create: bool


@record
class PhasePlan:
    """What one phase will do: goal snapshot, transfers, steps, checks, refusals."""

    phase: str
    goal: Goal | None
    transfers: list[Transfer] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    transfers_done: bool = False
    datasets: list[dict[str, str]] = field(default_factory=list)

    @property
    def estimated_bytes(self) -> int:
        return sum(t.estimate or 0 for t in self.transfers)

    def refuse_if_needed(self) -> None:
        if self.refusals:
            raise MigrateRefused("; ".join(r.text() for r in self.refusals))

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "snapshot": self.goal.name if self.goal else None,
            "creates_snapshot": bool(self.goal and self.goal.create),
            "datasets": self.datasets,
            "transfers": [t.to_json() for t in self.transfers],
            "estimated_bytes": self.estimated_bytes,
            "steps": [s.to_json() for s in self.steps],
            "checks": self.checks,
            "notes": self.notes,
            "refusals": [{"message": r.message, "fix": r.fix} for r in self.refusals],
        }
