"""Resolving a rotation journal an interrupted run left pending.

``plan_recovery`` reads the journal and ZFS's evidence and decides (commit,
abort, or "a key is needed"); it changes nothing, so it is also the whole of
``encroot recover -n``.  ``recover`` runs the plan's one step: the channel
program that commits or aborts the journal in one transaction group.
``user_properties`` reads user properties through a pending journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ..errors import EncrootError, PendingRotation, RotationRefused
from ..keys import Key
from ..names import DatasetName
from ..owned import ROTATION_MARKER, ROTATION_STAGE_PREFIX, foreign_owner, refuse_live
from ..records import field, record
from ..zfs import Zfs
from .journal import Decision, Marker, decide
from .plan import DatasetState
from .read import read_state, staged_values
from .steps import RotationStep, commit_step

__all__ = ["RecoveryPlan", "RecoveryResult", "plan_recovery", "recover", "user_properties"]

RecoveryAction = Literal["none", "committed", "aborted"]


@record(frozen=True)
class RecoveryPlan:
    """What ``recover`` will do to a pending journal, why, and the step that does it.

    ``action`` is none (no journal), committed or aborted; ``properties`` the
    staged values a commit makes visible; ``steps`` the one COMMIT_JOURNAL
    step (none for ``none``).
    """

    dataset: str
    action: RecoveryAction
    evidence: str
    properties: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[RotationStep, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "action": self.action, "evidence": self.evidence,
                "properties": dict(self.properties),
                "steps": [step.to_json() for step in self.steps]}


@record(frozen=True)
class RecoveryResult:
    """What ``recover`` found and did: action is none, committed or aborted."""

    dataset: str
    action: str
    evidence: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "action": self.action, "evidence": self.evidence,
                "properties": dict(self.properties)}


def plan_recovery(zfs: Zfs, dataset: str, *, new_key: Key | None = None,
                  old_key: Key | None = None, force: bool = False) -> RecoveryPlan:
    """Decide from evidence what to do with the pending journal on ``dataset`` (reads only).

    Evidence, strongest first: ``zfs load-key -n`` with the rotation's new
    or old key when given; encryptionroot (for ``-i``), keyformat,
    pbkdf2salt (passphrases) or pbkdf2iters; the pool's history.  A journal
    whose writer is still running, or was written by an encroot on another
    host (``encroot change-key HOST:DATASET``: its liveness cannot be checked
    from here), is left alone unless ``force``.

    Raises:
        RotationRefused: the dataset does not exist, or another host's encroot
            wrote its journal (nothing changed).
        OwnerAlive: the rotation's encroot process still runs (nothing changed).
        PendingRotation: the evidence cannot tell; give the new or the old key.
    """
    name = DatasetName(dataset)
    state = read_state(zfs, [name]).get(name)
    if state is None:
        raise RotationRefused(f"{name}: dataset does not exist")
    if state.marker is None:
        return RecoveryPlan(name, "none", "no pending rotation")
    marker = Marker.loads(state.marker)
    if not force:
        refuse_live(str(name), marker)
        _refuse_foreign(name, marker)
    decision = _decide(zfs, name, marker, state, new_key, old_key)
    if decision.verdict == "unknown":
        raise PendingRotation(f"{name}: a key rotation started {marker.started} was "
                              f"interrupted and {decision.evidence}; run: encroot recover "
                              f"{name} --new-key-file FILE (or --old-key-file FILE)",
                              dataset=name)
    commit = decision.verdict == "commit"
    staged = staged_values(zfs, name)  # also for an abort: they size the program's limits
    step = commit_step(name.pool, {name: (marker.id, commit)}, items=len(staged) + 1,
                       commands=zfs.commands)
    return RecoveryPlan(name, "committed" if commit else "aborted", decision.evidence,
                        staged if commit else {}, (step,))


def _refuse_foreign(name: DatasetName, marker: Marker) -> None:
    owner = foreign_owner(marker)
    if owner is not None:
        raise RotationRefused(f"{name}: a key rotation by {owner.describe()} is pending, whose "
                              "liveness cannot be checked from this host; wait for it, or once "
                              f"it is gone: encroot recover --force {name}")


def recover(zfs: Zfs, dataset: str, *, new_key: Key | None = None, old_key: Key | None = None,
            force: bool = False) -> RecoveryResult:
    """Resolve a pending rotation journal on ``dataset`` from evidence (``plan_recovery``).

    Raises:
        RotationRefused: the dataset does not exist, or another host's encroot
            wrote its journal (nothing changed).
        OwnerAlive: the rotation's encroot process still runs (nothing changed).
        PendingRotation: the evidence cannot tell; give the new or the old key.
        EncrootError: the program did not resolve the journal (its answer is quoted).
        ZfsError: ``zfs program`` failed.
    """
    plan = plan_recovery(zfs, dataset, new_key=new_key, old_key=old_key, force=force)
    for step in plan.steps:  # one COMMIT_JOURNAL step, or none
        result = zfs.run_program(step.commands[0], step.program)
        outcome = result.get(plan.dataset) if isinstance(result, dict) else None
        if outcome not in ("committed", "aborted"):
            raise EncrootError(f"{plan.dataset}: the journal could not be resolved: {outcome}")
    return RecoveryResult(plan.dataset, plan.action, plan.evidence, plan.properties)


def _decide(zfs: Zfs, name: DatasetName, marker: Marker, state: DatasetState,
            new_key: Key | None, old_key: Key | None) -> Decision:
    def matches(key: Key | None) -> bool | None:
        """``load-key -n``; a key of another format than the current one cannot match."""
        if key is None:
            return None
        return key.format == state.props.get("keyformat") and zfs.check_key(name, key)

    new_matches = matches(new_key)
    old_matches = matches(old_key) if new_key is None else None
    decision = decide(marker, name, state.props, new_key_matches=new_matches,
                      old_key_matches=old_matches)
    if decision.verdict == "unknown":
        history = zfs.pool_history(name.pool, internal=True, long=False)
        decision = decide(marker, name, state.props, history=history)
    return decision


def user_properties(zfs: Zfs, dataset: str) -> dict[str, str]:
    """The dataset's user properties (all sources), never stale.

    A pending rotation is resolved first when the evidence allows; when it
    does not, PendingRotation is raised (OwnerAlive while its writer still
    runs) rather than returning values that may describe the wrong key.

    Raises:
        OwnerAlive: the rotation's encroot process still runs.
        PendingRotation: the journal cannot be resolved without a key.
    """
    name = DatasetName(dataset)
    for _attempt in range(2):
        table = zfs.get([name], ("all",), use_json=False)
        values = table[name] if name in table else {}
        marker = values.get(ROTATION_MARKER)
        if marker is None or marker.source != "local":
            return {p: v.value for p, v in values.items()
                    if ":" in p and not p.startswith(ROTATION_STAGE_PREFIX)}
        recover(zfs, name)  # OwnerAlive while the rotation still runs
    raise PendingRotation(f"{name}: the rotation journal is still pending", dataset=name)
