"""Planning a migration phase (pure: state in, plan out, no ZFS).

A phase first brings DST up to a *goal* snapshot of SRC (``plan_sync``):

- normally one raw replication stream of SRC's whole root (``zfs send -w
  -R``, or ``-R -I`` from the newest snapshot DST already has) into the
  staging dataset ``DST/encroot-migrate``: one pipeline, whatever the
  number of datasets and snapshots (cutover's moves and mounts grow with
  the datasets, nothing grows with the snapshots).  Every child that
  inherits SRC's key then inherits the staging's, and cutover loads one key
  and runs one ``change-key -i`` before moving the children to their names;
- with an unencrypted DST root (on purpose), one stream per child tree of
  SRC's root, received in place: each stays an encryption root;
- after an interruption, first ``zfs send -t`` for every partial receive,
  then per-dataset streams for what a cut replication stream left missing
  (read again after each resume: ZFS's state is the only journal).

Cutover then re-parents, moves and checks (``plan_finish``).  Everything here is
plain data that ``-n`` prints and ``--json`` emits.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..owned import MIGRATE_MARKER, MIGRATE_SNAPSHOT_PREFIX, MIGRATE_STAGING
from ..zfs import SendSpec
from .model import (
    MigrateRefused,
    MigrateRequest,
    MigrateState,
    Node,
    Side,
    Snap,
)

__all__ = [
    "Goal",
    "PhasePlan",
    "Refusal",
    "Step",
    "Transfer",
    "assume_synced",
    "choose_goal",
    "encryption_problems",
    "expected_encryption_root",
    "human_bytes",
    "plan_finish",
    "plan_phase",
    "plan_sync",
    "reparent_order",
    "root_properties",
    "snapshot_problems",
    "staged",
    "with_goal",
]

# SRC root's local properties that stay behind: encryption is DST's own, and
# a mount point or share of SRC would collide with SRC's while both are imported.
MOUNT_PROPERTIES = ("mountpoint", "sharenfs", "sharesmb")
ROOT_PROPERTIES_KEPT_BACK = frozenset({
    "encryption", "keyformat", "keylocation", "pbkdf2iters", "pbkdf2salt", "encryptionroot",
    *MOUNT_PROPERTIES,
})
RECEIVE_OPTIONS = ("-u", "-s")

OPENZFS_12614 = (
    "a raw incremental received into a dataset whose key was changed (re-parented with "
    "zfs change-key -i) replaces its key with the source's, and the dataset no longer mounts "
    "once its key is unloaded (OpenZFS issue 12614)")


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


# -- the goal snapshot --------------------------------------------------------------------

def _on_every_dataset(state: MigrateState, short: str) -> bool:
    return all(node.snapshot(short) is not None for node in state.source.nodes.values())


def choose_goal(request: MigrateRequest, state: MigrateState, phase: str,
                fresh_name: str) -> Goal:
    """The snapshot this phase sends up to.

    ``--snapshot NAME`` is used as given (taken if SRC lacks it).  Otherwise
    initial and catch-up reuse the newest encroot snapshot DST does not have
    yet (an interrupted run's), so re-running does not pile up snapshots;
    cutover always takes a fresh one, since it must include the last writes.
    """
    if request.snapshot is not None:
        return Goal(request.snapshot, not _on_every_dataset(state, request.snapshot))
    root = state.source.root_node
    if phase != "cutover" and root is not None:
        for snap in reversed(root.snapshots):
            if not snap.name.startswith(MIGRATE_SNAPSHOT_PREFIX):
                continue
            if _on_every_dataset(state, snap.name) and not _synced(request, state, snap.name):
                return Goal(snap.name, False)
            break
    return Goal(fresh_name, not _on_every_dataset(state, fresh_name))


def _synced(request: MigrateRequest, state: MigrateState, short: str) -> bool:
    """Every SRC dataset that has ``short`` has it on DST with the same GUID."""
    if state.destination is None:
        return False
    for node in _received_nodes(request, state):
        snap = node.snapshot(short)
        if snap is None:
            continue
        target = _target(request, state, node)
        if target is None or snap.guid not in {s.guid for s in target.snapshots}:
            return False
    return True


def _migrated_nodes(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC's datasets that move: every descendant, and the root with ``dataset:NAME``."""
    nodes = [n for n in state.source.subtree(request.source) if n.name != request.source]
    root = state.source.root_node
    if request.root_dataset and root is not None:
        nodes.insert(0, root)
    return nodes


# -- where datasets land ------------------------------------------------------------------

def staged(state: MigrateState) -> bool:
    """Whether SRC is received whole into DST's staging dataset (DST's root is encrypted).

    One replication stream of SRC's root keeps every inheriting child under
    one received encryption root, so cutover derives SRC's key once (PBKDF2,
    seconds under emulation) and runs one ``change-key -i``.  An unencrypted
    DST root cannot take the children over, so they then move per child
    tree, received in place, each an encryption root of its own.
    """
    dst = state.destination
    return dst is not None and dst.root_node is not None and dst.root_node.encrypted


def _received_name(request: MigrateRequest, state: MigrateState, name: str) -> str:
    """Where the transfers put a SRC dataset."""
    return request.staged_name(name) if staged(state) else request.destination_name(name)


def _received_nodes(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC's datasets the transfers copy: with staging, the root too."""
    if staged(state):
        return state.source.subtree(request.source)
    return _migrated_nodes(request, state)


def _target(request: MigrateRequest, state: MigrateState, node: Node) -> Node | None:
    """DST's copy of ``node`` where it is now: at its final name once cutover moved it,
    else where it was received."""
    assert state.destination is not None
    if node.name != request.source or request.root_dataset:
        moved = state.destination.get(request.destination_name(node.name))
        if moved is not None:
            return moved
    return state.destination.get(_received_name(request, state, node.name))


# -- transfers ----------------------------------------------------------------------------

def trees(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC root's direct children, ordered so that clone origins move before their clones."""
    children = state.source.children(request.source)
    tops = {node.name for node in children}
    top_of = functools.partial(_top_of, request)
    needs: dict[str, set[str]] = {top: set() for top in tops}
    for node in state.source.subtree(request.source):
        if node.origin not in ("-", "") and node.name != request.source:
            origin_dataset = node.origin.split("@", 1)[0]
            if origin_dataset.startswith(request.source + "/"):
                first, second = top_of(origin_dataset), top_of(node.name)
                if first != second:
                    needs[second].add(first)
    ordered: list[Node] = []
    pending = list(children)
    while pending:
        ready = [n for n in pending if needs[n.name] <= {o.name for o in ordered}]
        if not ready:
            raise MigrateRefused("clones and origins cross between SRC's child trees in a "
                                 "cycle (" + ", ".join(n.name for n in pending) + "); "
                                 "zfs promote one clone first")
        ordered += ready
        pending = [n for n in pending if n not in ready]
    return ordered


def plan_sync(request: MigrateRequest, state: MigrateState, goal: str
              ) -> tuple[list[Transfer], list[Refusal]]:
    """The transfers that bring DST up to ``goal``; resumes come alone (then read again)."""
    assert state.destination is not None
    resumes = [Transfer("resume", request.source_name(node.name), node.name,
                        SendSpec(resume_token=node.resume_token))
               for node in state.destination.subtree(request.destination) if node.resumable]
    if resumes:
        return resumes, []
    transfers: list[Transfer] = []
    refusals: list[Refusal] = []
    if staged(state):
        root = state.source.root_node
        assert root is not None
        _sync_tree(request, state, root, goal, transfers, refusals)
        return transfers, refusals
    if request.root_dataset:
        root = state.source.root_node
        assert root is not None
        _sync_dataset(request, state, root, goal, transfers, refusals)
    for top in trees(request, state):
        _sync_tree(request, state, top, goal, transfers, refusals)
    return transfers, refusals


def _full_spec(node: Node, snapshot: str, *, replicate: bool) -> SendSpec:
    return SendSpec(f"{node.name}@{snapshot}", replicate=replicate)


def _sync_tree(request: MigrateRequest, state: MigrateState, top: Node, goal: str,
               transfers: list[Transfer], refusals: list[Refusal]) -> None:
    if top.snapshot(goal) is None:
        return  # created after the goal snapshot: the next phase sends it
    base = _received_base(request, state, top, goal, transfers, refusals)
    if base is None:
        return
    _repair_below(request, state, top, base.name, transfers, refusals)
    if base.name != goal:
        spec = SendSpec(f"{top.name}@{goal}", base=f"{top.name}@{base.name}", replicate=True)
        transfers.append(Transfer("tree-incremental", top.name,
                                  _received_name(request, state, top.name), spec))


def _received_base(request: MigrateRequest, state: MigrateState, node: Node, goal: str,
                   transfers: list[Transfer], refusals: list[Refusal]) -> Snap | None:
    """The newest snapshot DST holds of ``node``; if DST has no such dataset, its whole
    subtree is planned as one -R stream up to ``goal`` (and None returned)."""
    assert state.destination is not None
    target_name = _received_name(request, state, node.name)
    target = state.destination.get(target_name)
    if target is None:
        transfers.append(Transfer("tree", node.name, target_name,
                                  _full_spec(node, goal, replicate=True)))
        return None
    common = node.newest_common(target)
    if common is None:
        refusals.append(_name_taken(target_name, node.name))
    return common


def _repair_below(request: MigrateRequest, state: MigrateState, parent: Node, base: str,
                  transfers: list[Transfer], refusals: list[Refusal]) -> None:
    """Bring every dataset below ``parent`` up to ``base``, as a cut -R stream left it.

    A dataset missing on DST gets its whole subtree in one -R stream; one
    that stopped at an older snapshot gets an incremental of its own.  The
    next -R -I stream of the tree puts the encryption hierarchy back (libzfs
    ``recv_fix_encryption_hierarchy``).
    """
    for child in state.source.children(parent.name):
        limit = child.snapshot(base)
        if limit is None:
            continue
        common = _received_base(request, state, child, base, transfers, refusals)
        if common is None:
            continue
        if common.txg < limit.txg:
            spec = SendSpec(f"{child.name}@{base}", base=f"{child.name}@{common.name}")
            transfers.append(Transfer("dataset-incremental", child.name,
                                      _received_name(request, state, child.name), spec))
        _repair_below(request, state, child, base, transfers, refusals)


def _sync_dataset(request: MigrateRequest, state: MigrateState, node: Node, goal: str,
                  transfers: list[Transfer], refusals: list[Refusal]) -> None:
    """SRC root's own data as one dataset (``--root-data dataset:NAME``), without -R
    (only without staging: with it, the staging dataset is SRC root's copy)."""
    assert state.destination is not None
    if node.snapshot(goal) is None or not node.snapshots:
        return
    target_name = request.destination_name(node.name)
    target = state.destination.get(target_name)
    if target is None:
        first = node.snapshots[0].name
        transfers.append(Transfer("dataset", node.name, target_name,
                                  _full_spec(node, first, replicate=False)))
        base = first
    else:
        common = node.newest_common(target)
        if common is None:
            refusals.append(_name_taken(target_name, node.name))
            return
        base = common.name
    if base != goal:
        spec = SendSpec(f"{node.name}@{goal}", base=f"{node.name}@{base}")
        transfers.append(Transfer("dataset-incremental", node.name, target_name, spec))


def _name_taken(target: str, source: str) -> Refusal:
    return Refusal(f"{target} exists on DST and shares no snapshot with {source}",
                   f"zfs rename {target} {target}.old (or zfs destroy -r {target})")


# -- preconditions --------------------------------------------------------------------------

def _destination_refusals(request: MigrateRequest, state: MigrateState) -> list[Refusal]:
    source_root = state.source.root_node
    keyformat = source_root.keyformat if source_root else "passphrase"
    create = (f"zpool create -O encryption=on -O keyformat={keyformat} "
              f"-O keylocation=prompt {request.destination} <vdevs>")
    if state.destination is None or state.destination.root_node is None:
        return [Refusal(f"DST pool {request.destination} is not imported",
                        f"zpool import {request.destination}, or create it: {create}")]
    refusals = []
    if state.destination_pool.get("feature@encryption") not in ("enabled", "active"):
        refusals.append(Refusal(f"feature@encryption is not enabled on {request.destination}",
                                f"zpool set feature@encryption=enabled {request.destination}"))
    root = state.destination.root_node
    if not root.encrypted and not request.allow_unencrypted_destination:
        refusals.append(Refusal(
            f"DST root {request.destination} is not encrypted, so the migrated datasets "
            "could not inherit its key", f"create DST encrypted: {create}; or pass "
            "--allow-unencrypted-destination to keep every moved tree under SRC's key"))
    return refusals


def _source_refusals(request: MigrateRequest, state: MigrateState) -> list[Refusal]:
    root = state.source.root_node
    if root is None:
        return [Refusal(f"SRC {request.source} does not exist")]
    if not root.is_encryption_root:
        return [Refusal(f"SRC {request.source} is not an encryption root; for an unencrypted "
                        "or inheriting dataset use zfs send -R | zfs receive")]
    if request.root_dataset and state.source.get(f"{request.source}/{request.root_dataset}"):
        return [Refusal(f"--root-data dataset:{request.root_dataset}: SRC already has a child "
                        "of that name", "choose another NAME")]
    if state.source.get(f"{request.source}/{MIGRATE_STAGING}"):
        return [Refusal(f"SRC has a child named {MIGRATE_STAGING}, the name encroot receives "
                        "SRC under on DST",
                        f"zfs rename {request.source}/{MIGRATE_STAGING} <other name>")]
    return []


def _final_names_taken(request: MigrateRequest, state: MigrateState) -> list[Refusal]:
    """Names cutover moves staged trees to, held on DST by datasets that are not SRC's."""
    assert state.destination is not None
    movers = list(state.source.children(request.source))
    root = state.source.root_node
    if request.root_dataset and root is not None:
        movers.append(root)
    refusals = []
    for node in movers:
        final = state.destination.get(request.destination_name(node.name))
        if final is not None and node.newest_common(final) is None:
            refusals.append(_name_taken(final.name, node.name))
    return refusals


def _root_origin_refusals(request: MigrateRequest, state: MigrateState) -> list[Refusal]:
    """Clones of SRC root's snapshots need the root's copy kept (it is their origin)."""
    if request.root_dataset or not staged(state):
        return []
    clones = [n.name for n in state.source.nodes.values()
              if n.origin.split("@", 1)[0] == request.source]
    if not clones:
        return []
    return [Refusal(f"{', '.join(clones[:3])} is a clone of a snapshot of SRC root "
                    f"{request.source}, so cutover cannot drop the root's copy",
                    "choose --root-data=dataset:NAME to keep it as DST/NAME")]


def _root_data_refusals(request: MigrateRequest, state: MigrateState,
                        phase: str) -> tuple[list[Refusal], list[str]]:
    """Files in SRC's root need a choice before cutover; earlier phases only warn."""
    if request.root_data == "copy" and state.root_files is None:
        return [Refusal(f"--root-data=copy reads SRC root's files, but {request.source} is "
                        "not mounted", f"zfs mount {request.source}")], []
    if request.root_data is not None:
        return [], []
    if state.root_files is None:
        problem = Refusal(f"SRC root {request.source} is not mounted, so encroot cannot see "
                          "whether files are stored in it",
                          f"zfs mount {request.source}, or choose --root-data=skip, "
                          "--root-data=copy or --root-data=dataset:NAME")
    elif state.root_files:
        shown = ", ".join(state.root_files[:5]) + (" ..." if len(state.root_files) > 5 else "")
        problem = Refusal(f"SRC root {request.source} stores files itself ({shown}); a pool's "
                          "root cannot be replaced raw",
                          "choose --root-data=dataset:NAME (kept raw as DST/NAME) or "
                          "--root-data=copy (copied into DST's root, re-encrypted with DST's "
                          "key) or --root-data=skip (left behind)")
    else:
        return [], []
    if phase == "cutover":
        return [problem], []
    return [], [f"before cutover: {problem.text()}"]


def _reparented(request: MigrateRequest, state: MigrateState) -> list[str]:
    """DST datasets already holding DST root's key (a cutover re-parented them)."""
    assert state.destination is not None
    root = state.destination.root_node
    if root is None or not root.encrypted:
        return []
    found = []
    for node in _received_nodes(request, state):
        target = _target(request, state, node)
        if target is not None and node.encrypted and \
                node.encryptionroot == request.source and \
                target.encryptionroot == request.destination:
            found.append(target.name)
    return found


def _incremental_refusal(request: MigrateRequest, names: Sequence[str]) -> Refusal:
    shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    return Refusal(f"refusing a raw incremental into {shown}: already re-parented to "
                   f"{request.destination}'s key, and {OPENZFS_12614}",
                   f"start a fresh full transfer: zfs destroy -r <each of {shown}> and run "
                   f"encroot migrate --phase initial {request.source} {request.destination}")


def _space_refusal(request: MigrateRequest, state: MigrateState,
                   transfers: Sequence[Transfer]) -> list[Refusal]:
    needed = sum(t.estimate or 0 for t in transfers)
    if needed and needed > state.destination_available:
        return [Refusal(f"DST {request.destination} has {human_bytes(state.destination_available)} "
                        f"free and the transfer needs about {human_bytes(needed)} "
                        "(zfs send -nP)", f"free space or add capacity (zpool add "
                        f"{request.destination} ...)")]
    return []


def human_bytes(count: int) -> str:
    """``1000 B``, ``3.1 KiB``, ``1.0 GiB``: byte counts in messages and the progress line."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# -- the phase plan --------------------------------------------------------------------------

def plan_phase(request: MigrateRequest, state: MigrateState, phase: str, fresh_name: str,
               estimates: Mapping[str, int] | None = None) -> PhasePlan:
    """The whole plan of one phase (without estimates, the free-space check waits)."""
    refusals = _source_refusals(request, state) + _destination_refusals(request, state)
    if refusals:
        return PhasePlan(phase, None, refusals=refusals)
    data_refusals, notes = _root_data_refusals(request, state, phase)
    if state.marker is not None and state.marker.source == request.source:
        if phase != "cutover":
            return PhasePlan(phase, None, refusals=[_incremental_refusal(
                request, [str(request.destination), *_reparented(request, state)])])
        goal = Goal(state.marker.snapshot, False)
        plan = PhasePlan(phase, goal, refusals=data_refusals, notes=notes, transfers_done=True)
        plan.notes.append("an interrupted cutover's transfers are complete; it goes on "
                          "re-parenting")
        plan.steps = plan_finish(request, state, goal.name)
        return plan
    taken = _final_names_taken(request, state) if staged(state) else []
    if taken:
        return PhasePlan(phase, None, refusals=taken)
    reparented = _reparented(request, state)
    if reparented:
        return PhasePlan(phase, None, refusals=[_incremental_refusal(request, reparented)])
    if phase == "cutover":
        data_refusals += _root_origin_refusals(request, state)
    goal = choose_goal(request, state, phase, fresh_name)
    planned = with_goal(state, goal.name) if goal.create else state
    transfers, sync_refusals = plan_sync(request, planned, goal.name)
    transfers = [_estimated(t, estimates) for t in transfers]
    plan = PhasePlan(phase, goal, transfers, notes=notes,
                     refusals=data_refusals + sync_refusals)
    if any(t.kind == "resume" for t in transfers):
        plan.notes.append("partial receives are resumed first; encroot then reads ZFS again "
                          "and plans the rest")
    if staged(state) and phase != "cutover":
        plan.notes.append(f"SRC is received below {request.staging}; cutover moves each "
                          "child tree to its name")
    if estimates is not None:
        plan.refusals += _space_refusal(request, state, transfers)
    plan.checks = _checks(request, phase)
    plan.datasets = dataset_rows(request, planned, goal.name)
    if phase == "cutover":
        plan.steps = plan_finish(request, assume_synced(request, planned, goal.name), goal.name)
    return plan


def dataset_rows(request: MigrateRequest, state: MigrateState, goal: str
                 ) -> list[dict[str, str]]:
    """Each dataset that moves: where to, its snapshots up to the goal, its final key root."""
    rows = []
    for node in _migrated_nodes(request, state):
        limit = node.snapshot(goal)
        count = sum(1 for s in node.snapshots if limit is not None and s.txg <= limit.txg)
        rows.append({"source": node.name, "target": request.destination_name(node.name),
                     "type": node.type, "snapshots": str(count),
                     "encryptionroot_after": expected_encryption_root(request, state, node)
                     if state.destination and state.destination.root_node else "?"})
    return rows


def _estimated(transfer: Transfer, estimates: Mapping[str, int] | None) -> Transfer:
    if estimates is None or transfer.command() not in estimates:
        return transfer
    return Transfer(transfer.kind, transfer.source, transfer.target, transfer.spec,
                    estimates[transfer.command()])


def _checks(request: MigrateRequest, phase: str) -> list[str]:
    checks = ["every SRC snapshot up to the goal is on DST with the same GUID",
              "no partial receive is left (receive_resume_token)"]
    if phase == "cutover":
        checks += ["encryption, encryptionroot and keystatus as planned",
                   f"cold start: export and import {request.destination}, load only its "
                   "key, mount every file system"]
        if request.verify_mount:
            checks.append("every file's SHA-256 matches SRC's in the goal snapshot")
    return checks


def with_goal(state: MigrateState, goal: str) -> MigrateState:
    """SRC as it will be once the recursive goal snapshot is taken (for planning)."""
    nodes = {}
    for name, node in state.source.nodes.items():
        if node.snapshot(goal) is None:
            txg = max([s.txg for s in node.snapshots] + [node.createtxg]) + 1
            node = replace(node, snapshots=(*node.snapshots, Snap(goal, f"new:{name}", txg)))
        nodes[name] = node
    return replace(state, source=Side(state.source.root, nodes))


def assume_synced(request: MigrateRequest, state: MigrateState, goal: str) -> MigrateState:
    """DST as it will be once the transfers up to ``goal`` are done (plans later steps)."""
    if state.destination is None:
        return state
    nodes = dict(state.destination.nodes)
    for node in _received_nodes(request, state):
        name = _received_name(request, state, node.name)
        old = nodes.get(name)
        top = request.staging if staged(state) else \
            request.destination_name(_top_of(request, node.name))
        encroot = top if node.encryptionroot == request.source else (
            _received_name(request, state, node.encryptionroot) if node.encrypted else "-")
        nodes[name] = Node(name, node.type, guid=old.guid if old else f"new:{name}",
                           encryption=node.encryption, encryptionroot=encroot,
                           keystatus="unavailable" if node.encrypted else "-",
                           keyformat=node.keyformat, origin=node.origin,
                           canmount=node.canmount, createtxg=node.createtxg,
                           snapshots=node.snapshots)
    return replace(state, destination=Side(state.destination.root, nodes))


def _top_of(request: MigrateRequest, name: str) -> str:
    """The child tree of SRC's root that ``name`` belongs to (the root for itself)."""
    if name == request.source:
        return name
    relative = name[len(request.source) + 1:]
    return f"{request.source}/{relative.split('/', 1)[0]}"


# -- after the transfers: re-parent and verify ------------------------------------------------

def root_properties(request: MigrateRequest, state: MigrateState) -> dict[str, str]:
    """SRC root's local properties that DST's root takes over."""
    return {name: value for name, value in sorted(state.source_root_local.items())
            if name not in ROOT_PROPERTIES_KEPT_BACK and not name.startswith("encroot:")}


def expected_encryption_root(request: MigrateRequest, state: MigrateState,
                             node: Node) -> str:
    """The encryptionroot a migrated dataset must end with."""
    if not node.encrypted:
        return "-"
    if node.encryptionroot != request.source:
        return request.destination_name(node.encryptionroot)
    assert state.destination is not None and state.destination.root_node is not None
    if state.destination.root_node.encrypted:
        return str(request.destination)
    return request.destination_name(_top_of(request, node.name))


def reparent_order(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """DST encryption roots that hold SRC root's key, parents first."""
    found = []
    for node in _received_nodes(request, state):
        target = _target(request, state, node)
        if target is not None and node.encryptionroot == request.source and \
                target.is_encryption_root:
            found.append(target)
    return sorted(found, key=lambda n: (n.name.count("/"), n.name))


def plan_finish(request: MigrateRequest, state: MigrateState, goal: str) -> list[Step]:
    """Cutover after the last stream: root properties, marker, re-parent, checks."""
    assert state.destination is not None and state.destination.root_node is not None
    dst = str(request.destination)
    steps = [Step("verify-snapshots", dst, f"every SRC snapshot up to @{goal} on DST")]
    roots = reparent_order(request, state)
    # Loading first also proves SRC's key right before anything changes.
    steps += [Step("load-key", target.name, "with SRC root's key",
                   f"zfs load-key -L prompt {target.name} < <SRC key>") for target in roots]
    props = root_properties(request, state)
    if props:
        pairs = " ".join(f"{k}={v}" for k, v in props.items())
        steps.append(Step("set-root-properties", dst, pairs, f"zfs set {pairs} {dst}"))
    steps.append(Step("mark", dst, "cutover re-parents now; no raw incremental after this",
                      f"zfs set {MIGRATE_MARKER}=<json> {dst}"))
    dst_encrypted = state.destination.root_node.encrypted
    for target in roots:
        parent = target.name.rsplit("/", 1)[0]
        parent_node = state.destination.get(parent)
        if dst_encrypted or (parent_node is not None and parent_node.encrypted):
            steps.append(Step("inherit-key", target.name, f"inherit {parent}'s key",
                              f"zfs change-key -i {target.name}"))
    if staged(state):
        steps += _move_steps(request, state)
    steps.append(Step("cold-start", dst, "export; import under a temporary altroot; load "
                      "only DST's key; check encryption, encryptionroot and keystatus; "
                      "mount every file system",
                      f"zpool export {dst} && zpool import -R <tmp> {dst} && "
                      f"zfs load-key {dst} && zfs mount -a"))
    if request.root_data == "copy":
        steps.append(Step("copy-root-data", dst, f"files of {request.source}@{goal} copied "
                          "into DST's root, re-encrypted with DST's key"))
    if request.verify_mount:
        steps.append(Step("verify-files", dst, f"SHA-256 of every file in @{goal}, SRC vs DST"))
    steps.append(Step("reimport", dst, "export; import without mounting or loading its key",
                      f"zpool export {dst} && zpool import -N {dst}"))
    steps.append(Step("unmark", dst, "", f"zfs inherit {MIGRATE_MARKER} {dst}"))
    return steps


def _move_steps(request: MigrateRequest, state: MigrateState) -> list[Step]:
    """Each child tree out of the staging to its name; then the staging itself (SRC root's
    copy) to DST/NAME with ``--root-data dataset:NAME``, without SRC's mount point and
    shares, or dropped."""
    assert state.destination is not None
    steps = []
    for child in state.source.children(request.source):
        staged_name = request.staged_name(child.name)
        if state.destination.get(staged_name) is not None:
            steps.append(_move(staged_name, request.destination_name(child.name), "",
                               volume=child.type == "volume"))
    staging = state.destination.get(request.staging)
    if request.root_dataset:
        final = request.destination_name(request.source)
        if staging is not None:
            steps.append(_move(request.staging, final, " (SRC root's own data)"))
        steps += [Step("inherit", final, f"not SRC root's {name}", f"zfs inherit {name} {final}",
                       name) for name in MOUNT_PROPERTIES if name in state.source_root_local]
    elif staging is not None:
        steps.append(Step("drop-staging", request.staging, "SRC root's copy, its children "
                          "moved out; SRC keeps the original, and ZFS refuses while a child "
                          "is left", f"zfs destroy {request.staging}@% && "
                          f"zfs destroy {request.staging}"))
    return steps


def _move(name: str, final: str, why: str, *, volume: bool = False) -> Step:
    """``zfs rename -u`` (nothing is remounted); a volume takes no ``-u``."""
    flag = "" if volume else "-u "
    return Step("move", name, f"to {final}{why}", f"zfs rename {flag}{name} {final}", final)


def snapshot_problems(request: MigrateRequest, state: MigrateState, goal: str) -> list[str]:
    """SRC snapshots up to ``goal`` missing on DST or with another GUID; partial receives."""
    assert state.destination is not None
    problems = [f"{node.name}: partial receive left (receive_resume_token)"
                for node in state.destination.subtree(request.destination) if node.resumable]
    for node in _received_nodes(request, state):
        limit = node.snapshot(goal)
        if limit is None or (node.name == request.source and not request.root_dataset
                             and state.marker is not None):
            continue  # checked before the marker; cutover may have dropped the staging since
        target = _target(request, state, node)
        if target is None:
            problems.append(f"{_received_name(request, state, node.name)}: missing on DST")
            continue
        guids = {snap.guid for snap in target.snapshots}
        missing = [s.name for s in node.snapshots if s.txg <= limit.txg and s.guid not in guids]
        if missing:
            problems.append(f"{target.name}: missing @{', @'.join(missing[:3])}"
                            + (" ..." if len(missing) > 3 else ""))
    return problems


def encryption_problems(request: MigrateRequest, state: MigrateState, *,
                        keys_loaded: bool) -> list[str]:
    """Migrated datasets whose encryption, root or key status differ from the plan."""
    assert state.destination is not None
    problems = []
    for node in _migrated_nodes(request, state):
        target = state.destination.get(request.destination_name(node.name))
        if target is None:
            problems.append(f"{request.destination_name(node.name)}: missing on DST")
            continue
        if node.encryption != target.encryption:
            problems.append(f"{target.name}: encryption {target.encryption}, "
                            f"SRC has {node.encryption}")
            continue
        expected = expected_encryption_root(request, state, node)
        if target.encryptionroot != expected:
            problems.append(f"{target.name}: encryptionroot {target.encryptionroot}, "
                            f"expected {expected}")
        if keys_loaded and node.encryptionroot == request.source and \
                target.keystatus != "available":
            problems.append(f"{target.name}: keystatus {target.keystatus} with DST's key "
                            "loaded")
    return problems
