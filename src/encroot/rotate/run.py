"""Reading state, detecting strategies, executing rotation plans, recovering journals.

This is the only part of ``rotate`` that talks to ZFS (through ``Zfs``).
``rotate_keys`` is the whole operation: read state in one ``zfs get``,
detect capabilities, plan, execute, verify.  ``recover`` resolves a pending
journal left by an interrupted run.
"""

from __future__ import annotations

import datetime
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    DatasetNotFound,
    EncrootError,
    InputError,
    PendingRotation,
    PermissionDenied,
    RotationFailed,
    ZfsError,
)
from ..keys import Key
from ..names import DatasetName
from ..owned import ROTATION_MARKER, ROTATION_STAGE_PREFIX, refuse_live
from ..zfs import Zfs
from .journal import Decision, Marker, Owner, decide
from .lua import (
    IntentEntry,
    finish_program,
    intent_program,
    limits_for,
)
from .plan import (
    STATE_PROPERTIES,
    Capabilities,
    ChangeKeyRequest,
    DatasetState,
    Rotation,
    RotationPlan,
    RotationRefused,
    plan_rotation,
)

__all__ = [
    "ChangeKeyResult",
    "PendingRotation",
    "RecoveryResult",
    "RotationFailed",
    "detect_capabilities",
    "execute",
    "read_state",
    "recover",
    "rotate_keys",
]

_CAPABILITY_PROBE = "return {change_key = type(zfs.sync.change_key)}\n"


@dataclass(frozen=True)
class ChangeKeyResult:
    """One dataset's outcome.  ``error`` is None when the key and properties changed."""

    dataset: str
    strategy: str
    properties: Mapping[str, str]
    keyformat: str = ""
    encryptionroot: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "strategy": self.strategy, "ok": self.ok,
                "properties": dict(self.properties), "keyformat": self.keyformat,
                "encryptionroot": self.encryptionroot, "error": self.error}


# -- state and capabilities -------------------------------------------------------

def read_state(zfs: Zfs, datasets: Iterable[str],
               user_properties: Iterable[str] = ()) -> dict[str, DatasetState]:
    """Key properties, the journal marker and the named user properties, in one ``zfs get``.

    The properties are named, not ``all``: ``all`` leaves out hidden ones
    such as pbkdf2salt.  Datasets that do not exist are absent from the result.
    """
    wanted = list(dict.fromkeys(datasets))
    names = list(dict.fromkeys([*STATE_PROPERTIES, ROTATION_MARKER, *user_properties]))
    try:
        table = zfs.get(wanted, names, use_json=False) if wanted else None
    except DatasetNotFound:
        existing = [n for n in wanted if zfs.exists(n)]
        table = zfs.get(existing, names, use_json=False) if existing else None
    if table is None:
        return {}
    state: dict[str, DatasetState] = {}
    for name in table:
        values = table[name]
        props = {p: values[p].value for p in STATE_PROPERTIES if p in values}
        user = {p: v.value for p, v in values.items() if ":" in p and v.source == "local"}
        state[name] = DatasetState(name, props, user)
    return state


def _journal_properties(requests: Sequence[ChangeKeyRequest]) -> list[str]:
    """The user properties a batch sets, and their staged copies."""
    names = {p for r in requests for p in r.properties}
    return sorted(names | {ROTATION_STAGE_PREFIX + p for p in names})


def _staged_values(zfs: Zfs, name: str) -> dict[str, str]:
    """A pending journal's staged values, read from all local user properties."""
    table = zfs.get([name], ("all",), sources=("local",), use_json=False)
    values = {p: v.value for p, v in table[name].items()} if name in table else {}
    return DatasetState(name, {}, values).staged()


def detect_capabilities(zfs: Zfs, dataset: str) -> Capabilities:
    """Probe which strategies exist; ``dataset`` must be encrypted and not a clone.

    native: ``zfs change-key`` accepts user properties (a refused probe says so).
    channel-program: ``zfs.sync.change_key`` exists *and* the key can travel
    as ``hidden_args`` (kept out of pool history); the ``zfs program``
    command cannot pass hidden arguments, so encroot never offers it on a
    system where that is its only way to run a program.
    journal: ``zfs program`` runs here (it needs root).
    """
    cached = zfs.features.get("rotation strategies")
    if isinstance(cached, Capabilities):
        return cached
    reasons: dict[str, str] = {}
    native = zfs.change_key_accepts_user_properties(dataset)
    if not native:
        reasons["native"] = ("zfs change-key here accepts only keyformat, keylocation and "
                             "pbkdf2iters (user properties arrived after OpenZFS 2.4)")
    journal = True
    try:
        probe = zfs.program(DatasetName(dataset).pool, _CAPABILITY_PROBE, read_only=True)
        has_change_key = isinstance(probe, dict) and probe.get("change_key") == "function"
    except (PermissionDenied, ZfsError) as exc:
        journal, has_change_key = False, False
        reasons["journal"] = f"zfs program does not run here ({exc})"
    reasons["channel-program"] = (
        "zfs program cannot pass the key as hidden_args, so the key would be recorded in "
        "pool history" if has_change_key else
        "channel programs here have no zfs.sync.change_key (OpenZFS 2.1 to 2.4 do not)")
    capabilities = Capabilities(native=native, channel_program=False, journal=journal,
                                reasons=reasons)
    zfs.features["rotation strategies"] = capabilities
    return capabilities


# -- the whole operation -----------------------------------------------------------

def plan_for(zfs: Zfs, requests: Sequence[ChangeKeyRequest]) -> RotationPlan:
    """Read state (one ``zfs get``), detect capabilities, and plan."""
    names = [str(r.dataset) for r in requests]
    parents = [str(r.dataset.parent) for r in requests if r.inherit and r.dataset.parent]
    user = _journal_properties(requests)
    state = read_state(zfs, names + parents, user)
    pending = [n for n in names if n in state and state[n].marker is not None]
    for name in pending:  # a rotation still running is not ours to finish
        refuse_live(name, Marker.loads(state[name].marker or ""))
    if pending and not zfs.dry_run:
        for name in pending:  # the next operation on a dataset finishes its old rotation
            recover(zfs, name)
        state = read_state(zfs, names + parents, user)
    probe_on = next((n for n in names if n in state
                     and state[n].props.get("encryption", "off") != "off"
                     and state[n].props.get("origin", "-") in ("", "-")), None)
    capabilities = (detect_capabilities(zfs, probe_on) if probe_on is not None
                    else Capabilities(False, False, True))
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return plan_rotation(requests, state, capabilities, owner=Owner.current(),
                         started=started, new_id=lambda: secrets.token_hex(8))


def rotate_keys(zfs: Zfs, requests: Sequence[ChangeKeyRequest], *,
                say: Callable[[str], None] | None = None) -> list[ChangeKeyResult]:
    """Plan and execute; raise RotationFailed when any dataset was not rotated."""
    plan = plan_for(zfs, requests)
    results = execute(zfs, plan, requests, say=say)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RotationFailed("; ".join(f"{r.dataset}: {r.error}" for r in failed),
                             results=results)
    return results


# -- execution -------------------------------------------------------------------

@dataclass
class _Run:
    zfs: Zfs
    plan: RotationPlan
    requests: Mapping[str, ChangeKeyRequest]
    say: Callable[[str], None]
    errors: dict[str, str] = field(default_factory=dict)


def execute(zfs: Zfs, plan: RotationPlan, requests: Sequence[ChangeKeyRequest], *,
            say: Callable[[str], None] | None = None) -> list[ChangeKeyResult]:
    """Run ``plan``; every dataset ends rotated with its properties, or untouched.

    Order: load keys (-l), verify keyfiles, write the journal (journal
    strategy), change each key, resolve the journal, verify.  A dataset
    whose change-key fails is reported in its result; the others go on.
    """
    run = _Run(zfs, plan, {str(r.dataset): r for r in requests}, say or (lambda _: None))
    for rotation in plan.rotations:
        _check_key_file(rotation, run.requests[rotation.dataset])
    for rotation in plan.rotations:
        if rotation.load_key:
            load = run.requests[rotation.dataset].load_key
            assert load is not None  # the plan checked it
            run.say(f"loading the current key of {rotation.dataset}")
            zfs.load_key(rotation.dataset, load)
    journaled = [r for r in plan.rotations if r.marker is not None]
    _write_intent(run, journaled)
    for rotation in plan.rotations:
        _change_one(run, rotation)
    _finish(run, journaled)
    if zfs.dry_run:
        return [ChangeKeyResult(r.dataset, plan.strategy, r.properties,
                                r.expect_keyformat, r.expect_encryptionroot)
                for r in plan.rotations]
    return _verify(run)


def _check_key_file(rotation: Rotation, request: ChangeKeyRequest) -> None:
    """With a ``file://`` keylocation ZFS reads the new key there: it must be the key given."""
    location = rotation.keylocation
    if request.key is None or not location.startswith("file://"):
        return
    path = location[len("file://"):]
    try:
        with Key.from_file(path, request.key.format) as in_file:
            same = hmac.compare_digest(bytes(in_file.material()), bytes(request.key.material()))
    except (OSError, InputError) as exc:
        raise RotationRefused(f"{rotation.dataset}: keylocation {location} cannot be read as "
                              f"a {request.key.format} key ({exc})") from None
    if not same:
        raise RotationRefused(f"{rotation.dataset}: keylocation {location} holds a different "
                              "key than the one given; ZFS would read the file, so write the "
                              "new key there first (or use keylocation=prompt)")


def _by_pool(rotations: Iterable[Rotation]) -> dict[str, list[Rotation]]:
    pools: dict[str, list[Rotation]] = {}
    for rotation in rotations:
        pools.setdefault(rotation.pool, []).append(rotation)
    return pools


def _run_program(zfs: Zfs, pool: str, script: str, items: int) -> Any:
    limits = limits_for(script, items)
    return zfs.program(pool, script, instructions=limits.instructions, memory=limits.memory)


def _write_intent(run: _Run, journaled: Sequence[Rotation]) -> None:
    """One program per pool writes every journal, or (on any problem) none."""
    for pool, rotations in _by_pool(journaled).items():
        run.say(f"writing the rotation journal on {len(rotations)} dataset(s) in {pool}")
        entries = [IntentEntry(r.dataset, r.marker.dumps(), r.properties)
                   for r in rotations if r.marker is not None]
        result = _run_program(run.zfs, pool, intent_program(entries),
                              sum(len(e.staged) + 1 for e in entries))
        if run.zfs.dry_run:
            continue
        if not isinstance(result, dict) or not result.get("written"):
            errors = result.get("errors", {}) if isinstance(result, dict) else {}
            detail = "; ".join(f"{ds}: {msg}" for ds, msg in dict(errors).items())
            raise RotationRefused(f"the rotation journal was not written ({detail or result})")


def _change_one(run: _Run, rotation: Rotation) -> None:
    request = run.requests[rotation.dataset]
    options = dict(rotation.change_options)
    if run.plan.strategy == "native":
        options.update(rotation.properties)
    run.say(f"changing the key of {rotation.dataset}")
    try:
        run.zfs.change_key(rotation.dataset, request.key if rotation.stdin_key else None,
                           properties=options, inherit=rotation.inherit)
    except ZfsError as exc:
        run.errors[rotation.dataset] = str(exc)


def _finish(run: _Run, journaled: Sequence[Rotation]) -> None:
    """Commit the journals of the rotated datasets and abort the others, one program per pool."""
    for pool, rotations in _by_pool(journaled).items():
        outcomes = {r.dataset: (r.marker.id, r.dataset not in run.errors)
                    for r in rotations if r.marker is not None}
        run.say(f"committing the rotation journal in {pool}")
        result = _run_program(run.zfs, pool, finish_program(outcomes), len(outcomes))
        if run.zfs.dry_run:
            continue
        for dataset, outcome in (result or {}).items():
            if outcome not in ("committed", "aborted"):
                run.errors.setdefault(dataset, f"journal not resolved: {outcome}")


def _verify(run: _Run) -> list[ChangeKeyResult]:
    """Read every dataset once more and compare with the plan."""
    state = read_state(run.zfs, [r.dataset for r in run.plan.rotations],
                       _journal_properties(list(run.requests.values())))
    results = []
    for rotation in run.plan.rotations:
        error = run.errors.get(rotation.dataset)
        now = state.get(rotation.dataset)
        if error is None:
            error = _mismatch(rotation, now)
        props = {} if now is None else {k: now.user.get(k, "") for k in rotation.properties}
        results.append(ChangeKeyResult(
            rotation.dataset, run.plan.strategy, props,
            "" if now is None else now.props.get("keyformat", ""),
            "" if now is None else now.props.get("encryptionroot", ""), error))
    return results


def _mismatch(rotation: Rotation, now: DatasetState | None) -> str | None:
    if now is None:
        return "dataset vanished during the rotation"
    expected = {"keyformat": rotation.expect_keyformat,
                "encryptionroot": rotation.expect_encryptionroot, "keystatus": "available"}
    for prop, value in expected.items():
        if now.props.get(prop) != value:
            return f"after the change {prop} is {now.props.get(prop)!r}, expected {value!r}"
    for prop, value in rotation.properties.items():
        if now.user.get(prop) != value:
            return f"after the change {prop} is {now.user.get(prop)!r}, expected {value!r}"
    if now.marker is not None:
        return f"{ROTATION_MARKER} is still set"
    return None


# -- recovery --------------------------------------------------------------------

@dataclass(frozen=True)
class RecoveryResult:
    """What ``recover`` found and did: action is none, committed or aborted."""

    dataset: str
    action: str
    evidence: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.dataset, "action": self.action, "evidence": self.evidence,
                "properties": dict(self.properties)}


def recover(zfs: Zfs, dataset: str, *, new_key: Key | None = None, old_key: Key | None = None,
            force: bool = False) -> RecoveryResult:
    """Resolve a pending rotation journal on ``dataset`` from evidence.

    Evidence, strongest first: ``zfs load-key -n`` with the rotation's new
    or old key when given; encryptionroot (for ``-i``), keyformat,
    pbkdf2salt (passphrases) or pbkdf2iters; the pool's history.  A journal
    whose writer is still running is left alone unless ``force``.

    Raises:
        OwnerAlive: the rotation's encroot process still runs (nothing changed).
        PendingRotation: the evidence cannot tell; give the new or the old key.
    """
    name = DatasetName(dataset)
    state = read_state(zfs, [name]).get(name)
    if state is None:
        raise RotationRefused(f"{name}: dataset does not exist")
    if state.marker is None:
        return RecoveryResult(name, "none", "no pending rotation")
    marker = Marker.loads(state.marker)
    if not force:
        refuse_live(str(name), marker)
    decision = _decide(zfs, name, marker, state, new_key, old_key)
    if decision.verdict == "unknown":
        raise PendingRotation(f"{name}: a key rotation started {marker.started} was "
                              f"interrupted and {decision.evidence}; run: encroot recover "
                              f"{name} --new-key-file FILE (or --old-key-file FILE)",
                              dataset=name)
    commit = decision.verdict == "commit"
    staged = _staged_values(zfs, name)  # also for an abort: they size the program's limits
    result = _run_program(zfs, name.pool, finish_program({name: (marker.id, commit)}),
                          len(staged) + 1)
    outcome = (result or {}).get(name) if isinstance(result, dict) else None
    if not zfs.dry_run and outcome not in ("committed", "aborted"):
        raise EncrootError(f"{name}: the journal could not be resolved: {outcome}")
    return RecoveryResult(name, "committed" if commit else "aborted", decision.evidence,
                          staged if commit else {})


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
