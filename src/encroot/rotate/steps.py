"""The steps of a rotation plan, each with the zfs commands it runs (pure).

A ``RotationStep`` names its ``RotationAction`` (the executor dispatches on
it with a ``match`` that mypy checks for completeness) and holds the
state-changing ``Command``s it runs, built with ``ZfsCommands``; a journal
step also holds the channel program its command reads on stdin.  So ``-n``,
``--json`` and ``-v`` show the commands as shell lines, and the executor runs
these very commands instead of rebuilding them.

Every command is exact but one: COMMIT_JOURNAL's program is planned for
every change-key succeeding; for a dataset whose change-key failed the
executor sends the same command with the abort program instead (see
``finish_program``), so that no dataset is left half-rotated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from ..owned import ROTATION_MARKER
from ..records import record
from ..zfs import Command, ZfsCommands
from .lua import IntentEntry, finish_program, intent_program, limits_for

if TYPE_CHECKING:
    from .plan import Rotation  # the plan holds the steps built from its rotations

__all__ = ["RotationAction", "RotationStep", "by_pool", "commit_step", "rotation_steps"]


class RotationAction(Enum):
    """What a step does; the value is the name ``-n`` and ``--json`` print."""

    LOAD_KEY = "load-key"
    WRITE_JOURNAL = "write-journal"
    CHANGE_KEY = "change-key"
    COMMIT_JOURNAL = "commit-journal"
    VERIFY = "verify"


@record(frozen=True)
class RotationStep:
    """One thing the rotation executor does.

    Attributes:
        action: picks the executor's code for the step.
        subject: the dataset, or the pool for the journal steps (one program per pool).
        detail: for people: what the step does and why.
        commands: the state-changing zfs commands the step runs (VERIFY only reads).
        program: the channel program the journal steps' command reads on stdin.
        datasets: the datasets a journal step covers, in order.
    """

    action: RotationAction
    subject: str
    detail: str = ""
    commands: tuple[Command, ...] = ()
    program: str = ""
    datasets: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "action": self.action.value, "subject": self.subject, "detail": self.detail,
            "commands": [command.shell_line() for command in self.commands],
            "argv": [list(command.argv) for command in self.commands]}
        if self.program:
            document["program"] = self.program
        return document

    def lines(self) -> list[str]:
        """The step as ``-n`` prints it: one line, then each command's shell line."""
        head = f"{self.action.value} {self.subject}" + (f"  ({self.detail})" if self.detail
                                                        else "")
        return [head] + [f"     {command.shell_line()}" for command in self.commands]


def by_pool(rotations: Iterable[Rotation]) -> dict[str, list[Rotation]]:
    """Rotations grouped by pool, in plan order (a channel program works on one pool)."""
    pools: dict[str, list[Rotation]] = {}
    for rotation in rotations:
        pools.setdefault(rotation.pool, []).append(rotation)
    return pools


def _program_step(action: RotationAction, pool: str, detail: str, script: str, items: int,
                  datasets: Sequence[str], commands: ZfsCommands) -> RotationStep:
    limits = limits_for(script, items)
    command = commands.channel_program(pool, instructions=limits.instructions, memory=limits.memory)
    return RotationStep(action, pool, detail, (command,), script, tuple(datasets))


def commit_step(pool: str, outcomes: Mapping[str, tuple[str, bool]], *, items: int,
                commands: ZfsCommands) -> RotationStep:
    """Resolve the journals of ``outcomes`` (``{dataset: (journal id, commit?)}``) in one
    program: ``items`` (at least one per dataset, more for staged values) sizes its limits."""
    commits = sum(1 for _, commit in outcomes.values() if commit)
    detail = (f"channel program on stdin: {commits} journal(s) committed (staged values onto "
              f"their properties), {len(outcomes) - commits} aborted; {ROTATION_MARKER} "
              "removed; one transaction group")
    return _program_step(RotationAction.COMMIT_JOURNAL, pool, detail,
                         finish_program(outcomes), items, list(outcomes), commands)


def rotation_steps(strategy: str, rotations: Sequence[Rotation], *,
                   commands: ZfsCommands) -> tuple[RotationStep, ...]:
    """Load keys (-l), write the journals (one program per pool), change each key,
    commit the journals (one program per pool), verify."""
    steps = [RotationStep(RotationAction.LOAD_KEY, r.dataset, "the current key, on stdin",
                          (commands.load_key(r.dataset),))
             for r in rotations if r.load_key]
    journaled = by_pool(r for r in rotations if r.marker is not None)
    for pool, group in journaled.items():
        entries = [IntentEntry(r.dataset, r.marker.dumps(), r.properties)
                   for r in group if r.marker is not None]
        steps.append(_program_step(
            RotationAction.WRITE_JOURNAL, pool,
            f"channel program on stdin: {ROTATION_MARKER} and staged values on "
            f"{len(entries)} dataset(s), one transaction group",
            intent_program(entries), sum(len(e.staged) + 1 for e in entries),
            [e.dataset for e in entries], commands))
    for rotation in rotations:
        options = dict(rotation.change_options)
        if strategy == "native":
            options.update(rotation.properties)
        steps.append(RotationStep(
            RotationAction.CHANGE_KEY, rotation.dataset,
            ("the new key on stdin" if rotation.stdin_key else
             "the parent's key" if rotation.inherit else
             f"zfs reads the new key from {rotation.keylocation}")
            + (" with the user properties" if strategy == "native" and rotation.properties
               else ""),
            (commands.change_key(rotation.dataset, properties=options,
                                 inherit=rotation.inherit, key_on_stdin=rotation.stdin_key),)))
    for pool, group in journaled.items():
        outcomes = {r.dataset: (r.marker.id, True) for r in group if r.marker is not None}
        steps.append(commit_step(pool, outcomes, items=len(outcomes), commands=commands))
    steps.append(RotationStep(RotationAction.VERIFY, ", ".join(r.dataset for r in rotations),
                              "keyformat, encryptionroot, keystatus and user properties "
                              "(one zfs get)"))
    return tuple(steps)
