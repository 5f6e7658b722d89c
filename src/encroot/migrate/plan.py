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

Cutover then re-parents, moves and checks (``finish.plan_finish``).  The plan's
data types are in ``steps``, where datasets land in ``landing``.  Everything here is
plain data that ``-n`` prints and ``--json`` emits.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from ..owned import MIGRATE_SNAPSHOT_PREFIX, MIGRATE_STAGING, Owner
from ..records import replace
from ..zfs import SendSpec
from .finish import expected_encryption_root, plan_finish
from .landing import current_copy, migrated_nodes, received_name, received_nodes, staged, top_of
from .model import MigrateRefused, MigrateRequest, MigrateState, Node, Side, Snap
from .steps import (
    Goal,
    MigrateAction,
    PhasePlan,
    Refusal,
    SideCommands,
    Step,
    Transfer,
    human_bytes,
)

__all__ = ["assume_synced", "choose_goal", "phases_to_run", "plan_phase", "plan_sync", "trees",
           "with_goal"]

OPENZFS_12614 = (
    "a raw incremental received into a dataset whose key was changed (re-parented with "
    "zfs change-key -i) replaces its key with the source's, and the dataset no longer mounts "
    "once its key is unloaded (OpenZFS issue 12614)")


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
    for node in received_nodes(request, state):
        snap = node.snapshot(short)
        if snap is None:
            continue
        target = current_copy(request, state, node)
        if target is None or snap.guid not in {s.guid for s in target.snapshots}:
            return False
    return True


# -- transfers ----------------------------------------------------------------------------

def trees(request: MigrateRequest, state: MigrateState) -> list[Node]:
    """SRC root's direct children, ordered so that clone origins move before their clones."""
    children = state.source.children(request.source)
    tops = {node.name for node in children}
    tree_of = functools.partial(top_of, request)
    needs: dict[str, set[str]] = {top: set() for top in tops}
    for node in state.source.subtree(request.source):
        if node.origin not in ("-", "") and node.name != request.source:
            origin_dataset = node.origin.split("@", 1)[0]
            if origin_dataset.startswith(request.source + "/"):
                first, second = tree_of(origin_dataset), tree_of(node.name)
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


def plan_sync(request: MigrateRequest, state: MigrateState, goal: str,
              commands: SideCommands | None = None) -> tuple[list[Transfer], list[Refusal]]:
    """The transfers that bring DST up to ``goal``, each with its send and receive built
    by ``commands`` (this host's by default); resumes come alone (then read again)."""
    transfers, refusals = _sync(request, state, goal)
    sides = commands or SideCommands()
    return [replace(t, commands=sides.pipeline(t.spec, t.target)) for t in transfers], refusals


def _sync(request: MigrateRequest, state: MigrateState, goal: str
          ) -> tuple[list[Transfer], list[Refusal]]:
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
                                  received_name(request, state, top.name), spec))


def _received_base(request: MigrateRequest, state: MigrateState, node: Node, goal: str,
                   transfers: list[Transfer], refusals: list[Refusal]) -> Snap | None:
    """The newest snapshot DST holds of ``node``; if DST has no such dataset, its whole
    subtree is planned as one -R stream up to ``goal`` (and None returned)."""
    assert state.destination is not None
    target_name = received_name(request, state, node.name)
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
                                      received_name(request, state, child.name), spec))
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
        return [Refusal(f"DST pool {request.destination} is not imported{request.on_destination}",
                        f"zpool import -N {request.destination} (not mounting: once cutover "
                        f"moved them, DST's file systems have SRC's mount points), or create "
                        f"it: {create}")]
    refusals = []
    if state.destination_pool.get("feature@encryption") not in ("enabled", "active"):
        refusals.append(Refusal(f"feature@encryption is not enabled on {request.destination}"
                                f"{request.on_destination}",
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
    for node in received_nodes(request, state):
        target = current_copy(request, state, node)
        if target is not None and node.encrypted and \
                node.encryptionroot == request.source and \
                target.encryptionroot == request.destination:
            found.append(target.name)
    return found


def _cutover_begun(request: MigrateRequest, state: MigrateState) -> bool:
    """DST's cutover marker names this SRC: re-parenting began, no raw incremental may follow."""
    return state.marker is not None and state.marker.source == request.source


def phases_to_run(request: MigrateRequest, state: MigrateState) -> tuple[str, ...]:
    """The request's phases, but without ``--phase`` (all) only cutover once a cutover of
    SRC began re-parenting: its transfers are complete and it goes on, where the initial
    phase would be refused (a raw incremental after re-parenting)."""
    if request.phase == "all" and _cutover_begun(request, state):
        return ("cutover",)
    return request.phases


def _cutover_begun_refusal(request: MigrateRequest, phase: str) -> Refusal:
    return Refusal(f"refusing {phase}: a cutover of {request.source} began re-parenting on "
                   f"{request.destination}{request.on_destination} (its encroot:migrate "
                   f"marker says so), and {OPENZFS_12614}",
                   f"finish that cutover: encroot migrate --phase cutover {request.source} "
                   f"{request.destination}")


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


# -- the phase plan --------------------------------------------------------------------------

def plan_phase(request: MigrateRequest, state: MigrateState, phase: str, fresh_name: str,
               estimates: Mapping[str, int] | None = None, *,
               commands: SideCommands | None = None, owner: Owner | None = None) -> PhasePlan:
    """The whole plan of one phase (without estimates, the free-space check waits).

    ``commands`` builds each side's commands (this host's ``zfs`` by default),
    ``owner`` is who cutover's marker names (this process by default).
    """
    refusals = _source_refusals(request, state) + _destination_refusals(request, state)
    if refusals:
        return PhasePlan(phase, None, refusals=refusals)
    data_refusals, notes = _root_data_refusals(request, state, phase)
    if state.marker is not None and state.marker.source == request.source:  # _cutover_begun
        if phase != "cutover":
            return PhasePlan(phase, None, refusals=[_cutover_begun_refusal(request, phase)])
        goal = Goal(state.marker.snapshot, False)
        plan = PhasePlan(phase, goal, refusals=data_refusals, notes=notes, transfers_done=True)
        plan.notes.append("an interrupted cutover's transfers are complete; it goes on "
                          "re-parenting")
        plan.steps = plan_finish(request, state, goal.name, commands=commands, owner=owner)
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
    transfers, sync_refusals = plan_sync(request, planned, goal.name, commands)
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
    plan.steps = _phase_steps(request, goal, commands or SideCommands())
    if phase == "cutover":
        plan.steps += plan_finish(request, assume_synced(request, planned, goal.name),
                                  goal.name, commands=commands, owner=owner)
    return plan


def _phase_steps(request: MigrateRequest, goal: Goal, commands: SideCommands) -> list[Step]:
    """The goal snapshot (when it must be taken), then the transfers."""
    steps = []
    if goal.create:
        steps.append(Step(MigrateAction.SNAPSHOT, str(request.source), "the goal, recursive",
                          (commands.source.snapshot([f"{request.source}@{goal.name}"],
                                                    recursive=True),)))
    steps.append(Step(MigrateAction.TRANSFER, str(request.destination), "the transfers "
                      "below, partial receives resumed first; then every SRC snapshot up to "
                      "the goal checked on DST"))
    return steps


def dataset_rows(request: MigrateRequest, state: MigrateState, goal: str
                 ) -> list[dict[str, str]]:
    """Each dataset that moves: where to, its snapshots up to the goal, its final key root."""
    rows = []
    for node in migrated_nodes(request, state):
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
    return replace(transfer, estimate=estimates[transfer.command()])


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
    """SRC as it will be once the recursive goal snapshot is taken: each dataset's goal
    with a stand-in GUID (``new:NAME``), which no DST snapshot has.  For ``-n``, and for
    the transfers a phase plans between taking the goal and reading SRC again."""
    nodes = {}
    for name, node in state.source.nodes.items():
        if node.snapshot(goal) is None:
            txg = max([s.txg for s in node.snapshots] + [node.createtxg]) + 1
            node = replace(node, snapshots=(*node.snapshots, Snap(goal, f"new:{name}", txg)))
        nodes[name] = node
    return replace(state, source=replace(state.source, nodes=nodes))


def assume_synced(request: MigrateRequest, state: MigrateState, goal: str) -> MigrateState:
    """DST as it will be once the transfers up to ``goal`` are done (plans later steps)."""
    if state.destination is None:
        return state
    nodes = dict(state.destination.nodes)
    for node in received_nodes(request, state):
        name = received_name(request, state, node.name)
        old = nodes.get(name)
        top = request.staging if staged(state) else \
            request.destination_name(top_of(request, node.name))
        encroot = top if node.encryptionroot == request.source else (
            received_name(request, state, node.encryptionroot) if node.encrypted else "-")
        nodes[name] = Node(name, node.type, guid=old.guid if old else f"new:{name}",
                           encryption=node.encryption, encryptionroot=encroot,
                           keystatus="unavailable" if node.encrypted else "-",
                           keyformat=node.keyformat, origin=node.origin,
                           canmount=node.canmount, createtxg=node.createtxg,
                           snapshots=node.snapshots)
    return replace(state, destination=Side(state.destination.root, nodes))


