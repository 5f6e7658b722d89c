"""What a migration phase plan holds: transfers, cutover steps, refusals (plain data).

``plan`` builds these (pure functions); ``-n`` prints them and ``--json``
emits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..zfs import SendSpec
from .model import MigrateRefused

__all__ = ["RECEIVE_OPTIONS", "Goal", "PhasePlan", "Refusal", "Step", "Transfer", "human_bytes"]

RECEIVE_OPTIONS = ("-u", "-s")


@dataclass(frozen=True)
class Refusal:
    """A failed precondition: what is wrong and the command that fixes it."""

    message: str
    fix: str = ""

    def text(self) -> str:
        return self.message + (f"; fix: {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Transfer:
    """One ``zfs send | zfs receive -u -s`` pipeline.

    ``kind`` is ``tree`` (-R full), ``tree-incremental`` (-R -I),
    ``dataset`` (one dataset's first snapshot, or a clone stream),
    ``dataset-incremental`` (-I) or ``resume`` (-t).
    """

    kind: str
    source: str
    target: str
    spec: SendSpec
    estimate: int | None = None

    def command(self) -> str:
        return f"{self.spec.describe()} | zfs receive {' '.join(RECEIVE_OPTIONS)} {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "target": self.target,
                "estimated_bytes": self.estimate, "command": self.command()}


@dataclass(frozen=True)
class Step:
    """One action after the transfers (cutover), with the command a user would type.

    ``argument`` is the action's second operand: a move's new name, or the
    property an ``inherit`` step resets.
    """

    action: str
    dataset: str
    detail: str = ""
    command: str = ""
    argument: str = ""

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "dataset": self.dataset, "detail": self.detail,
                "command": self.command, "argument": self.argument}


@dataclass(frozen=True)
class Goal:
    """The snapshot a phase sends up to; ``create`` when encroot must take it first."""

    name: str
    create: bool


@dataclass
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


def human_bytes(count: int) -> str:
    """``1000 B``, ``3.1 KiB``, ``1.0 GiB``: byte counts in messages and the progress line."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
