"""Executing a migration phase by phase.

``migrate`` runs the phases; each reads both pools (``read``), plans from what
ZFS shows (``plan``, pure), takes ownership of DST, and runs the plan's steps
through ``execute``: one ``match`` on ``MigrateAction``, whose default is
``assert_never``, running the ``Command``s each step carries (cutover's
steps in ``cutover``).  A phase that was killed or whose stream was cut is
simply run again: partial receives are resumed (``zfs send -t``), what arrived
is kept, nothing on SRC is touched beyond its own snapshots.

Each side has its own ``Zfs``: the same one for a local migration, one over
ssh for a remote SRC or DST (``encroot.zfs.ssh``).  Reads and SRC's snapshots
go to SRC's, every other command to DST's; a transfer is SRC's ``zfs send``
piped into DST's ``zfs receive``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, assert_never

from ..errors import EncrootError, RemoteConnectionLost, ZfsError
from ..keys import Key
from ..owned import (
    MIGRATE_MARKER,
    MigrateCutover,
    MigratePhase,
    Owner,
    claim_marker,
    dumps,
    foreign_owner,
    refuse_live,
)
from ..progress import Progress
from ..records import field, record, replace
from ..zfs import Zfs
from .cutover import cold_start, load_source_key, mark, reimport, run_commands, verify_snapshots
from .files import VerificationFailed, copy_root_data, fail_on, verify_files
from .finish import plan_finish, snapshot_problems
from .model import MigrateRefused, MigrateRequest, MigrateState
from .plan import phases_to_run, plan_phase, plan_sync, with_goal
from .read import (
    estimates,
    fresh_snapshot_name,
    plan_migration,
    read_root_local,
    read_side,
    read_state,
    refresh_destination,
    root_files,
    side_commands,
)
from .steps import Goal, MigrateAction, PhasePlan, SideCommands, Step, Transfer

__all__ = [
    "KeyReader",
    "MigrateResult",
    "PhaseResult",
    "Progress",
    "VerificationFailed",
    "execute",
    "fresh_snapshot_name",
    "migrate",
    "plan_migration",
    "read_state",
]

# Partial receives resumed, then read again: a bound that a healthy run never reaches.
MAX_SYNC_ROUNDS = 32


@record
class PhaseResult:
    """What one phase did."""

    plan: PhasePlan
    transferred_bytes: int = 0
    transfers_run: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "transferred_bytes": self.transferred_bytes,
                "transfers_run": self.transfers_run, "verified": self.verified}


@record
class MigrateResult:
    """Every phase's result, in order."""

    phases: list[PhaseResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"phases": [p.to_json() for p in self.phases]}


@record
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
    owner: Owner = field(default_factory=Owner.current)
    phase_marked: bool = False  # our phase marker is on DST's root (removed at the end)
    sizes: dict[str, int] = field(default_factory=dict)  # zfs send -nP, by transfer command

    # SRC's goal snapshot was taken and SRC not read since (its GUIDs are stand-ins):
    # the next refresh reads SRC with DST, in one zfs get (one host only).
    source_pending: bool = False

    def refresh(self, *, snapshots: bool = True) -> MigrateState:
        """DST read again (see ``refresh_destination``), SRC with it when pending."""
        self.state = refresh_destination(self.dst, self.request, self.state,
                                         source=self.source_pending, snapshots=snapshots)
        self.source_pending = False
        return self.state

    @property
    def commands(self) -> SideCommands:
        return side_commands(self.zfs, self.dst)

    def plan(self, phase: str, goal: str, sizes: dict[str, int] | None = None) -> PhasePlan:
        return plan_phase(self.request, self.state, phase, goal, sizes,
                          commands=self.commands, owner=self.owner)


# Reads SRC root's key given its keyformat: see ``migrate``.
KeyReader = Callable[[str], Key]


def migrate(zfs: Zfs, request: MigrateRequest, *, source_key: Key | KeyReader | None = None,
            destination_key: Key | None = None, progress: Progress | None = None,
            say: Callable[[str], None] = lambda line: None,
            destination_zfs: Zfs | None = None, take_over: str | None = None) -> MigrateResult:
    """Run the requested phases; see docs/design.md for what each does.

    ``zfs`` runs SRC's commands, ``destination_zfs`` (default: the same) DST's.
    ``source_key`` is SRC root's key, or a function that reads it given SRC root's
    keyformat, called once after the first read and before any change (its
    caller wipes the key it returns; not called when SRC is absent).
    ``take_over`` is the host id of a marker's owner on another host, whose
    liveness cannot be checked from here: the user says it is gone.

    Phases run in one call hand DST's marker on (one ``zfs program`` claims it
    from the phase before) and a phase starts from the state the phase before
    read last, with SRC root's local properties and files read again: this
    process held DST throughout, and each phase's transfers read both trees
    again until nothing is pending.

    Raises:
        MigrateRefused: a precondition failed (nothing changed in that phase), or DST is
            held by an encroot on another host (``take_over`` names it to go on).
        VerificationFailed: DST differs from the plan after a phase.
        ZfsError: a zfs command failed; run the same phase again to continue.
    """
    result = MigrateResult()
    dst = zfs if destination_zfs is None else destination_zfs
    before: _Run | None = None  # the phase before, its marker still on DST
    try:
        for phase in request.phases:
            state = (read_state(zfs, request, dst, root_local=phase == "cutover")
                     if before is None else _state_after(before))
            if phase not in phases_to_run(request, state):
                say(f"{phase}: skipped, an interrupted cutover goes on")
                continue
            if callable(source_key):  # not read when SRC is absent: the plan refuses
                root = state.source.root_node
                source_key = source_key(root.keyformat) if root is not None else None
            run = _Run(zfs, dst, request, say, progress, source_key, destination_key,
                       PhaseResult(PhasePlan(phase, None)), state)
            if before is not None:
                run.phase_marked, before.phase_marked = before.phase_marked, False
            before = run
            result.phases.append(_run_phase(run, phase, take_over))
    finally:
        if before is not None and before.phase_marked:
            _release(before)
    return result


def _state_after(before: _Run) -> MigrateState:
    """The state the next phase of the same call starts from: the phase before's last
    read, with SRC root's local properties and files read again (cutover uses them)."""
    zfs, source = before.zfs, before.request.source
    local, files = zfs.concurrently(partial(read_root_local, zfs, source),
                                    partial(root_files, before.state.source, zfs))
    return replace(before.state, source_root_local=local, root_files=files)


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
    """Plan, check, take ownership and run one phase.  DST's phase marker stays on
    after success (``migrate`` releases it, or the next phase claims it over); a
    failure releases it here."""
    try:
        request, state = run.request, run.state
        refuse_held(request, state, take_over)
        plan = run.plan(phase, fresh_snapshot_name(state))
        plan.refuse_if_needed()
        assert plan.goal is not None
        goal = plan.goal
        sizes: dict[str, int] = {}
        if not plan.transfers_done:  # the space check, before anything changes
            sizes = estimates(run.zfs, plan.transfers, state)
            run.plan(phase, goal.name, sizes).refuse_if_needed()
        run.result = PhaseResult(plan)
        if "cutover" in request.phases:  # before the first byte moves, not after the copy
            _check_keys(run, state)
        _take_ownership(run, phase)
        return _run_owned_phase(run, phase, plan, goal, sizes)
    except BaseException:
        if run.phase_marked:
            _release(run)
        raise


def _release(run: _Run) -> None:
    """Remove DST's phase marker (this process's)."""
    run.dst.inherit(run.request.destination, MIGRATE_MARKER)
    run.phase_marked = False


def _take_ownership(run: _Run, phase: str) -> None:
    """Before the phase's first change, name this process on DST's root: a phase marker,
    or (an interrupted cutover's marker being there) the same cutover marker with us as
    its owner, so that it keeps saying that re-parenting began.  A phase after another
    in the same call claims the marker over from the phase before's."""
    cutover = run.state.marker
    destination = run.state.destination
    assert destination is not None  # a phase needs DST's pool
    if cutover is not None:
        marker: MigrateCutover | MigratePhase = replace(cutover, owner=run.owner)
    else:
        marker = MigratePhase(source=str(run.request.source), phase=phase, owner=run.owner)
    value = dumps(marker)
    try:
        claim_marker(run.dst, str(run.request.destination), MIGRATE_MARKER,
                     destination.root_values.get(MIGRATE_MARKER), value)
    except ZfsError:
        raise  # the marker is as it was: the phase before's is still ours to release
    except EncrootError:
        run.phase_marked = False  # another process's value is there now: not ours
        raise
    run.phase_marked = cutover is None
    root_values = {**destination.root_values, MIGRATE_MARKER: value}
    cutover_marker, phase_marker = MigrateState.markers(value)
    run.state = replace(run.state, destination=replace(destination, root_values=root_values),
                        marker=cutover_marker, phase_marker=phase_marker)


def _run_owned_phase(run: _Run, phase: str, plan: PhasePlan, goal: Goal,
                     sizes: dict[str, int]) -> PhaseResult:
    """The phase after ownership: its own steps (snapshot, transfers), then cutover's,
    planned from what DST shows after the last transfer.

    The transfers are estimated once, before the goal snapshot is taken (its
    stand-in is each dataset's newest snapshot): the progress line's total grows
    when a stream outgrows it, so a second round of ``zfs send -nP`` after the
    snapshot would cost seconds for a slightly better total.
    """
    run.sizes = sizes
    for step in plan.steps:
        if step.action in (MigrateAction.SNAPSHOT, MigrateAction.TRANSFER):
            execute(run, step, phase, goal)
    if phase == "cutover":
        for step in plan_finish(run.request, run.state, goal.name, commands=run.commands,
                                owner=run.owner):
            execute(run, step, phase, goal)
    return run.result


def execute(run: _Run, step: Step, phase: str, goal: Goal) -> None:
    """Run one step of ``phase`` (its commands, or what the action does around them)."""
    if step.action not in (MigrateAction.SNAPSHOT, MigrateAction.TRANSFER):
        run.say(f"{step.action}: {step.dataset}" + (f" ({step.detail})" if step.detail else ""))
    match step.action:
        case MigrateAction.SNAPSHOT:
            request = run.request
            run.say(f"snapshot: {request.source}@{goal.name} (recursive)")
            for command in step.commands:
                run.zfs.execute(command)
            if run.dst is run.zfs:  # SRC is read with DST once the transfers ran
                run.state = with_goal(run.state, goal.name)
                run.source_pending = True
            else:
                run.state = replace(run.state, source=read_side(run.zfs, request.source))
        case MigrateAction.TRANSFER:
            plan = run.plan(phase, goal.name, run.sizes)
            plan.goal = goal
            plan.refuse_if_needed()
            run.result.plan = plan
            _sync(run, goal.name, plan.transfers)
            if run.source_pending:  # no transfer ran: SRC's GUIDs are still stand-ins
                run.refresh()
            fail_on(snapshot_problems(run.request, run.state, goal.name), "after the transfers")
            run.result.verified.append(f"every SRC snapshot up to @{goal.name} is on DST "
                                       "with its GUID")
        case MigrateAction.VERIFY_SNAPSHOTS:
            verify_snapshots(run, goal.name)
        case MigrateAction.LOAD_KEY:
            load_source_key(run, step)
        case MigrateAction.MARK:
            mark(run, goal.name)
        case (MigrateAction.INHERIT_KEY | MigrateAction.MOVE | MigrateAction.INHERIT
              | MigrateAction.DROP_STAGING | MigrateAction.UNMARK):
            run_commands(run, step.commands)
        case MigrateAction.COLD_START:
            cold_start(run)
        case MigrateAction.COPY_ROOT_DATA:
            copy_root_data(run, step, goal.name)
        case MigrateAction.VERIFY_FILES:
            verify_files(run, step, goal.name)
        case MigrateAction.REIMPORT:
            reimport(run)
        case _:
            assert_never(step.action)


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
        pending, refusals = plan_sync(run.request, run.refresh(), goal, run.commands)
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
        send, receive = transfer.pipeline()
        run.zfs.run_pipeline(send, receive, progress=advance,
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


