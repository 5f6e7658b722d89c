"""Reading both pools, and executing a migration phase by phase.

``read_state`` takes two recursive ``zfs get`` calls (SRC and DST, with all
snapshots), one for SRC root's local properties and one ``zpool get``.
``migrate`` runs the phases; each plans from what ZFS shows, so a phase that
was killed or whose stream was cut is simply run again: partial receives
are resumed (``zfs send -t``), what arrived is kept, nothing on SRC is
touched beyond its own snapshots.

Each side has its own ``Zfs``: the same one for a local migration, one over
ssh for a remote SRC or DST (``encroot.zfs.ssh``).  Reads and SRC's snapshots
go to SRC's, every other command to DST's; a transfer is SRC's ``zfs send``
piped into DST's ``zfs receive``.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import DatasetNotFound, IncorrectKey, RemoteConnectionLost, ZfsError
from ..keys import Key
from ..owned import (
    MIGRATE_MARKER,
    MIGRATE_SNAPSHOT_PREFIX,
    MigrateCutover,
    MigratePhase,
    Owner,
    claim_marker,
    dumps,
    foreign_owner,
    refuse_live,
)
from ..progress import Progress
from ..zfs import SendSpec, Zfs
from .files import VerificationFailed, child_entries, copy_root_data, fail_on, verify_files
from .finish import (
    encryption_problems,
    plan_finish,
    reparent_order,
    root_properties,
    snapshot_problems,
)
from .model import (
    MigrateRefused,
    MigrateRequest,
    MigrateState,
    Node,
    Side,
    Snap,
)
from .plan import assume_synced, plan_phase, plan_sync, with_goal
from .steps import Goal, PhasePlan, Step, Transfer

__all__ = [
    "MigrateResult",
    "PhaseResult",
    "Progress",
    "VerificationFailed",
    "fresh_snapshot_name",
    "migrate",
    "plan_migration",
    "read_state",
]

STATE_PROPERTIES = ("type", "guid", "encryption", "encryptionroot", "keystatus", "keyformat",
                    "keylocation", "origin", "canmount", "mountpoint", "mounted", "createtxg",
                    "receive_resume_token", "available", MIGRATE_MARKER)
# Partial receives resumed, then read again: a bound that a healthy run never reaches.
MAX_SYNC_ROUNDS = 32



@dataclass
class PhaseResult:
    """What one phase did."""

    plan: PhasePlan
    transferred_bytes: int = 0
    transfers_run: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "transferred_bytes": self.transferred_bytes,
                "transfers_run": self.transfers_run, "verified": self.verified}


@dataclass
class MigrateResult:
    """Every phase's result, in order."""

    phases: list[PhaseResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"phases": [p.to_json() for p in self.phases]}


# -- reading ----------------------------------------------------------------------------------

def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def read_side(zfs: Zfs, root: str) -> Side:
    """Every dataset and snapshot under ``root`` in one ``zfs get``; empty if it is absent."""
    try:
        table = zfs.get([root], STATE_PROPERTIES, recursive=True,
                        types=("filesystem", "volume", "snapshot"), use_json=False)
    except DatasetNotFound:
        return Side(root, {})
    values = {name: {p: v.value for p, v in table[name].items()} for name in table}
    snapshots: dict[str, list[Snap]] = {}
    for name, props in values.items():
        if "@" in name:
            dataset, short = name.split("@", 1)
            snapshots.setdefault(dataset, []).append(
                Snap(short, props.get("guid", ""), _int(props.get("createtxg", ""))))
    nodes = {}
    for name, props in values.items():
        if "@" in name:
            continue
        snaps = tuple(sorted(snapshots.get(name, []), key=lambda s: s.txg))
        nodes[name] = Node(
            name, props.get("type", ""), props.get("guid", ""), props.get("encryption", "off"),
            props.get("encryptionroot", "-"), props.get("keystatus", "-"),
            props.get("keyformat", "none"), props.get("keylocation", "none"),
            props.get("origin", "-"),
            props.get("canmount", "-"), props.get("mountpoint", "-"),
            props.get("mounted", "-"), _int(props.get("createtxg", "")),
            props.get("receive_resume_token", "-"), snaps)
    return Side(root, nodes, values.get(root, {}))


def root_files(side: Side, zfs: Zfs | None = None) -> tuple[str, ...] | None:
    """Entries of the root's own file system (not child mount points); None if unmounted.

    On a remote SRC (``zfs`` remote) the folder is listed there (``ls -A``)."""
    root = side.root_node
    if root is None or root.mounted != "yes" or not root.mountpoint.startswith("/"):
        return None
    children = child_entries(side)
    folder = root.mountpoint.rstrip("/") or "/"
    try:
        if zfs is not None and zfs.remote is not None:
            entries = sorted(zfs.list_directory(folder))
        else:
            entries = sorted(os.listdir(folder))
    except (OSError, ZfsError):
        return None
    return tuple(e for e in entries if e not in children)


def read_state(zfs: Zfs, request: MigrateRequest, dst: Zfs | None = None) -> MigrateState:
    """Both sides and the pool facts a plan needs, in four or five processes.

    ``zfs`` reads SRC, ``dst`` (default: the same) DST."""
    dst = zfs if dst is None else dst
    source = read_side(zfs, request.source)
    destination: Side | None = None
    pool: dict[str, str] = {}
    available = 0
    markers: tuple[MigrateCutover | None, MigratePhase | None] = (None, None)
    if dst.pool_exists(request.destination):
        destination = read_side(dst, request.destination)
        pool = dst.pool_get(request.destination, ["feature@encryption"])
        available = _int(destination.root_values.get("available", ""))
        markers = MigrateState.markers(destination.root_values.get(MIGRATE_MARKER))
    local: dict[str, str] = {}
    if source.root_node is not None:
        table = zfs.get([request.source], ("all",), sources=("local",), use_json=False)
        local = {p: v.value for p, v in table[request.source].items()} \
            if request.source in table else {}
    return MigrateState(source, destination, pool, available, local, root_files(source, zfs),
                        *markers)


def refresh_destination(zfs: Zfs, request: MigrateRequest,
                        state: MigrateState) -> MigrateState:
    """``state`` with DST read again (one ``zfs get``): what changes while a phase runs."""
    destination = read_side(zfs, request.destination)
    cutover, phase = MigrateState.markers(destination.root_values.get(MIGRATE_MARKER))
    return replace(state, destination=destination,
                   destination_available=_int(destination.root_values.get("available", "")),
                   marker=cutover, phase_marker=phase)


def fresh_snapshot_name(state: MigrateState, now: float | None = None) -> str:
    """``encroot-migrate-YYYYmmdd-HHMMSS`` (UTC), with a suffix if SRC has it already."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    name = MIGRATE_SNAPSHOT_PREFIX + stamp
    root = state.source.root_node
    taken = {s.name for s in root.snapshots} if root is not None else set()
    suffix = 1
    while name in taken:
        suffix += 1
        name = f"{MIGRATE_SNAPSHOT_PREFIX}{stamp}-{suffix}"
    return name


# -- planning ----------------------------------------------------------------------------------

def _estimates(zfs: Zfs, transfers: Sequence[Transfer], state: MigrateState) -> dict[str, int]:
    """``zfs send -nP`` of each transfer, keyed by its command.

    A snapshot not taken yet is stood in for by the dataset's newest one,
    so the estimate leaves out only what was written since.
    """
    found = {}
    for transfer in transfers:
        spec = _existing(transfer.spec, state)
        if spec is None:
            found[transfer.command()] = 0
            continue
        try:
            found[transfer.command()] = zfs.send_size(spec)
        except ZfsError:
            continue
    return found


def _existing(spec: SendSpec, state: MigrateState) -> SendSpec | None:
    """``spec`` with a snapshot SRC has; None when nothing would be sent yet."""
    if spec.resume_token is not None:
        return spec
    dataset, short = spec.snapshot.split("@", 1)
    node = state.source.get(dataset)
    if node is None or node.snapshot(short) is not None:
        return spec
    if not node.snapshots or f"{dataset}@{node.snapshots[-1].name}" == spec.base:
        return None
    return replace(spec, snapshot=f"{dataset}@{node.snapshots[-1].name}")


def plan_migration(zfs: Zfs, request: MigrateRequest,
                   destination_zfs: Zfs | None = None) -> list[PhasePlan]:
    """The plans of the requested phases, for ``-n``: later phases as if earlier ones ran.

    Estimates come from ``zfs send -nP`` where the snapshots exist; a phase
    that would first take its snapshot is estimated as the incremental from
    the newest snapshot DST has (the writes since then are not known yet).
    """
    state = read_state(zfs, request, destination_zfs)
    plans = []
    for phase in request.phases:
        plan = plan_phase(request, state, phase, fresh_snapshot_name(state))
        if plan.goal is not None and not plan.refusals:
            estimates = _estimates(zfs, plan.transfers, state)
            plan = plan_phase(request, state, phase, fresh_snapshot_name(state), estimates)
        plans.append(plan)
        if plan.refusals or plan.goal is None:
            break
        state = assume_synced(request, with_goal(state, plan.goal.name), plan.goal.name)
    return plans


# -- executing ----------------------------------------------------------------------------------

@dataclass
class _Run:
    zfs: Zfs  # SRC's side
    dst: Zfs  # DST's side: the same, or another host's
    request: MigrateRequest
    say: Callable[[str], None]
    progress: Progress | None
    source_key: Key | None
    destination_key: Key | None
    result: PhaseResult
    state: MigrateState
    altroot: str | None = None
    device_dirs: list[str] = field(default_factory=list)
    owner: Owner = field(default_factory=Owner.current)
    phase_marked: bool = False  # our phase marker is on DST's root (removed at the end)

    def refresh(self) -> MigrateState:
        self.state = refresh_destination(self.dst, self.request, self.state)
        return self.state


def migrate(zfs: Zfs, request: MigrateRequest, *, source_key: Key | None = None,
            destination_key: Key | None = None, progress: Progress | None = None,
            say: Callable[[str], None] = lambda line: None,
            destination_zfs: Zfs | None = None, take_over: str | None = None) -> MigrateResult:
    """Run the requested phases; see docs/design.md for what each does.

    ``zfs`` runs SRC's commands, ``destination_zfs`` (default: the same) DST's.
    ``take_over`` is the host id of a marker's owner on another host, whose
    liveness cannot be checked from here: the user says it is gone.

    Raises:
        MigrateRefused: a precondition failed (nothing changed in that phase), or DST is
            held by an encroot on another host (``take_over`` names it to go on).
        VerificationFailed: DST differs from the plan after a phase.
        ZfsError: a zfs command failed; run the same phase again to continue.
    """
    result = MigrateResult()
    dst = zfs if destination_zfs is None else destination_zfs
    for phase in request.phases:
        run = _Run(zfs, dst, request, say, progress, source_key, destination_key,
                   PhaseResult(PhasePlan(phase, None)), read_state(zfs, request, dst))
        result.phases.append(_run_phase(run, phase, take_over))
    return result


def refuse_held(request: MigrateRequest, state: MigrateState, take_over: str | None) -> None:
    """Refuse while DST's marker names a live encroot here, or any encroot on another host
    (its liveness cannot be checked from here) unless ``take_over`` names that host."""
    refuse_live(str(request.destination), state.marker, state.phase_marker)
    owner = foreign_owner(state.marker, state.phase_marker)
    if owner is not None and owner.host != take_over:
        raise MigrateRefused(
            f"{request.destination}{request.on_destination} is held by {owner.describe()}, "
            "whose liveness cannot be checked from this host; wait for it, or once it is "
            f"gone pass --take-over {owner.host}")


def _run_phase(run: _Run, phase: str, take_over: str | None) -> PhaseResult:
    zfs, request, state = run.zfs, run.request, run.state
    refuse_held(request, state, take_over)
    plan = plan_phase(request, state, phase, fresh_snapshot_name(state))
    plan.refuse_if_needed()
    assert plan.goal is not None
    goal = plan.goal
    estimates: dict[str, int] = {}
    if not plan.transfers_done:  # the space check, before anything changes
        estimates = _estimates(zfs, plan.transfers, state)
        plan_phase(request, state, phase, goal.name, estimates).refuse_if_needed()
    run.result = PhaseResult(plan)
    if "cutover" in request.phases:  # before the first byte moves, not after the copy
        _check_keys(run, state)
    _take_ownership(run, phase)
    try:
        return _run_owned_phase(run, phase, plan, goal, estimates)
    finally:
        if run.phase_marked:
            run.dst.inherit(request.destination, MIGRATE_MARKER)


def _take_ownership(run: _Run, phase: str) -> None:
    """Before the phase's first change, name this process on DST's root: a phase marker,
    or (an interrupted cutover's marker being there) the same cutover marker with us as
    its owner, so that it keeps saying that re-parenting began."""
    cutover = run.state.marker
    if cutover is not None:
        marker: MigrateCutover | MigratePhase = replace(cutover, owner=run.owner)
    else:
        marker = MigratePhase(source=str(run.request.source), phase=phase, owner=run.owner)
        run.phase_marked = True
    assert run.state.destination is not None  # a phase needs DST's pool
    claim_marker(run.dst, str(run.request.destination), MIGRATE_MARKER,
                 run.state.destination.root_values.get(MIGRATE_MARKER), dumps(marker))


def _run_owned_phase(run: _Run, phase: str, plan: PhasePlan, goal: Goal,
                     estimates: dict[str, int]) -> PhaseResult:
    """The phase after ownership: snapshot, transfers, checks, and cutover's steps.

    The transfers are estimated once, before the goal snapshot is taken (its
    stand-in is each dataset's newest snapshot): the progress line's total grows
    when a stream outgrows it, so a second round of ``zfs send -nP`` after the
    snapshot would cost seconds for a slightly better total.
    """
    zfs, request, say, state = run.zfs, run.request, run.say, run.state
    if not plan.transfers_done:
        if goal.create:
            say(f"snapshot: {request.source}@{goal.name} (recursive)")
            zfs.snapshot([f"{request.source}@{goal.name}"], recursive=True)
            state = replace(state, source=read_side(zfs, request.source))
        plan = plan_phase(request, state, phase, goal.name, estimates)
        plan.goal = goal
        plan.refuse_if_needed()
        run.result.plan, run.state = plan, state
        _sync(run, goal.name, plan.transfers)
        fail_on(snapshot_problems(request, run.state, goal.name), "after the transfers")
        run.result.verified.append(f"every SRC snapshot up to @{goal.name} is on DST "
                                   "with its GUID")
    if phase == "cutover":
        _finish(run, goal.name)
    return run.result


def _check_keys(run: _Run, state: MigrateState) -> None:
    """Cutover needs SRC root's key (to load the received roots) and DST's (cold start).

    Checked at the start of every phase of a run that includes cutover, so that
    a whole migration refuses before its initial copy rather than after it.

    The keys themselves are proven by use, not by ``load-key -n`` first: each
    proof derives the key again (PBKDF2 for a passphrase, seconds under
    emulation), and the received roots are loaded before anything changes.
    """
    request = run.request
    if run.source_key is None:
        raise MigrateRefused(f"cutover needs {request.source}'s key to re-parent: pass "
                             "--key-file F or --key-stdin, or run it on a terminal")
    assert state.destination is not None and state.destination.root_node is not None
    root = state.destination.root_node
    if not root.encrypted:
        return
    if root.keystatus != "available":
        raise MigrateRefused(f"DST root {root.name}'s key is not loaded; fix: "
                             f"zfs load-key {root.name}")
    if run.destination_key is None and root.keylocation == "prompt":
        raise MigrateRefused(f"the cold start reloads {root.name}'s key and its keylocation "
                             "is prompt: pass --new-key-file F")


def _sync(run: _Run, goal: str, transfers: Sequence[Transfer]) -> None:
    """Run transfers; after a resume (or all of them) read ZFS again until nothing is left."""
    pending = list(transfers)
    for _ in range(MAX_SYNC_ROUNDS):
        if not pending:
            return
        for transfer in pending:
            _transfer(run, transfer)
            if transfer.kind == "resume":
                break
        pending, refusals = plan_sync(run.request, run.refresh(), goal)
        if refusals:
            raise MigrateRefused("; ".join(r.text() for r in refusals))
    raise ZfsError(f"transfers to @{goal} still pending after {MAX_SYNC_ROUNDS} rounds")


def _transfer(run: _Run, transfer: Transfer) -> None:
    run.say(f"{transfer.kind}: {transfer.command()}")
    moved = 0

    def advance(count: int) -> None:
        nonlocal moved
        moved += count
        if run.progress is not None:
            run.progress.advance(count)

    if run.progress is not None:
        run.progress.start(transfer)
    try:
        run.zfs.transfer(transfer.spec, transfer.target, progress=advance,
                         destination=None if run.dst is run.zfs else run.dst)
    except ZfsError as exc:
        hint = (f"{exc} (during {transfer.command()}); what arrived is kept: run the same "
                f"encroot migrate phase again to continue")
        raise type(exc)(hint, argv=exc.argv, returncode=exc.returncode,
                        stderr=exc.stderr) from exc
    except RemoteConnectionLost as exc:
        raise RemoteConnectionLost(f"{exc} (during {transfer.command()}); what arrived is "
                                   "kept: run the same encroot migrate phase again to continue",
                                   host=exc.host, detail=exc.detail) from exc
    finally:
        if run.progress is not None:
            run.progress.finish(transfer, moved)
        run.result.transferred_bytes += moved
    run.result.transfers_run.append(transfer.command())


# -- cutover after the transfers ------------------------------------------------------------------

def _finish(run: _Run, goal: str) -> None:
    """Cutover's steps, planned from ``run.state``: read after the last transfer, or when
    the run began if the transfers were done before."""
    steps = plan_finish(run.request, run.state, goal)
    for step in steps:
        run.say(f"{step.action}: {step.dataset}" + (f" ({step.detail})" if step.detail else ""))
        _ACTIONS[step.action](run, step, goal)


def _verify_snapshots(run: _Run, step: Step, goal: str) -> None:
    fail_on(snapshot_problems(run.request, run.state, goal), "before re-parenting")


def _set_root_properties(run: _Run, step: Step, goal: str) -> None:
    run.dst.set(run.request.destination, root_properties(run.request, run.state))
    run.result.verified.append(f"SRC root's local properties set on {run.request.destination}")


def _mark(run: _Run, step: Step, goal: str) -> None:
    """Say on DST's root that re-parenting began: catch-up refuses from now on."""
    marker = MigrateCutover(source=str(run.request.source), snapshot=goal, stage="reparent",
                            devices=tuple(_device_dirs(run)), owner=run.owner)
    run.dst.set(run.request.destination, {MIGRATE_MARKER: dumps(marker)})
    run.phase_marked = False  # the cutover marker replaced it; unmark removes it


def _load_key(run: _Run, step: Step, goal: str) -> None:
    assert run.state.destination is not None
    node = run.state.destination.get(step.dataset)  # as read when the cutover began
    if node is not None and node.keystatus == "available":
        return
    assert run.source_key is not None
    try:
        run.dst.load_key(step.dataset, run.source_key)
    except IncorrectKey as exc:
        raise MigrateRefused(f"the key given for {run.request.source} is not its key: "
                             f"{step.dataset}, received raw from it, refused it; nothing was "
                             "re-parented") from exc


def _inherit_key(run: _Run, step: Step, goal: str) -> None:
    run.dst.change_key(step.dataset, inherit=True)


def _move(run: _Run, step: Step, goal: str) -> None:
    assert run.state.destination is not None
    node = run.state.destination.get(step.dataset)  # as read when the cutover began
    run.dst.rename(step.dataset, step.argument,
                   no_remount=node is None or node.type != "volume")


def _inherit(run: _Run, step: Step, goal: str) -> None:
    run.dst.inherit(step.dataset, step.argument)


def _drop_staging(run: _Run, step: Step, goal: str) -> None:
    """Destroy SRC root's copy: its snapshots, then the dataset itself without ``-r``, so
    that ZFS refuses (and nothing is lost) if anything is still below it."""
    assert run.state.destination is not None
    node = run.state.destination.get(step.dataset)  # as read when the cutover began
    if node is not None and node.snapshots:
        run.dst.destroy_all_snapshots(step.dataset)
    run.dst.destroy(step.dataset)


def _device_dirs(run: _Run) -> list[str]:
    """Folders of DST's devices (for ``zpool import -d``), read once while it is imported."""
    if not run.device_dirs:
        run.device_dirs = sorted({os.path.dirname(p) for p in
                                  run.dst.pool_device_paths(run.request.destination)})
    return run.device_dirs


def _cold_start(run: _Run, step: Step, goal: str) -> None:
    """Export and import DST under a temporary altroot; load only its key; mount all."""
    zfs, dst = run.dst, run.request.destination
    dirs = _device_dirs(run)
    # on a remote DST the altroot is a name there; zfs mount makes the folders it needs
    remote_altroot = f"/tmp/encroot-migrate-{secrets.token_hex(6)}"  # noqa: S108
    run.altroot = (tempfile.mkdtemp(prefix="encroot-migrate-") if run.dst.remote is None
                   else remote_altroot)
    zfs.export_pool(dst)
    zfs.import_pool(dst, search_dirs=dirs, no_mount=True, altroot=run.altroot)
    _load_destination_keys(run)
    state = run.refresh()
    fail_on(encryption_problems(run.request, state, keys_loaded=True), "after the cold start")
    run.result.verified.append("encryption, encryptionroot and keystatus as planned")
    assert state.destination is not None
    for node in _mountable(state.destination):
        zfs.mount(node.name)
    state = run.refresh()
    assert state.destination is not None
    unmounted = [n.name for n in _mountable(state.destination)]
    fail_on([f"{name}: not mounted" for name in unmounted], "after the cold start")
    run.result.verified.append(f"cold start: {dst} exported, imported, its key alone loaded, "
                               "every file system mounted")


def _mountable(side: Side) -> list[Node]:
    """File systems not mounted that a boot (or ``zfs mount``) could mount, parents first."""
    return [n for n in side.subtree(side.root)
            if n.type == "filesystem" and n.canmount != "off" and n.mounted != "yes"
            and n.keystatus in ("available", "-") and n.mountpoint.startswith("/")]


def _load_destination_keys(run: _Run) -> None:
    """After an import: DST's key, or (unencrypted DST) SRC's key for each moved tree."""
    zfs, dst = run.dst, run.request.destination
    assert run.state.destination is not None and run.state.destination.root_node is not None
    if run.state.destination.root_node.encrypted:
        try:
            if run.destination_key is not None:
                zfs.load_key(dst, run.destination_key)
            else:
                zfs.load_key_at_location(dst)
        except IncorrectKey as exc:
            raise MigrateRefused(f"--new-key-file does not hold {dst}'s key: {dst} is imported "
                                 f"without its key; run zfs load-key {dst}, then this cutover "
                                 "again") from exc
        return
    for node in reparent_order(run.request, run.state):
        assert run.source_key is not None
        zfs.load_key(node.name, run.source_key)


def _reimport(run: _Run, step: Step, goal: str) -> None:
    """Export and import DST normally, without mounting (its mount points are SRC's).

    DST's key is left unloaded: the cold start proved it loads, and deriving
    it again costs seconds for a passphrase; it is loaded when DST is mounted
    (after SRC is exported).
    """
    zfs, dst = run.dst, run.request.destination
    dirs = _device_dirs(run)
    zfs.export_pool(dst)
    zfs.import_pool(dst, search_dirs=dirs, no_mount=True)
    if run.altroot is not None and run.dst.remote is None:
        try:
            os.rmdir(run.altroot)
        except OSError:
            pass


def _unmark(run: _Run, step: Step, goal: str) -> None:
    run.dst.inherit(run.request.destination, MIGRATE_MARKER)


_ACTIONS: dict[str, Callable[[_Run, Step, str], None]] = {
    "verify-snapshots": _verify_snapshots,
    "set-root-properties": _set_root_properties,
    "mark": _mark,
    "load-key": _load_key,
    "inherit-key": _inherit_key,
    "move": _move,
    "inherit": _inherit,
    "drop-staging": _drop_staging,
    "cold-start": _cold_start,
    "copy-root-data": copy_root_data,
    "verify-files": verify_files,
    "reimport": _reimport,
    "unmark": _unmark,
}
