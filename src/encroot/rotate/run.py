"""Planning against ZFS and executing rotation plans.

``rotate_keys`` is the whole operation: read state in one ``zfs get``,
detect capabilities, plan (``plan_for``), execute, verify.  ``execute`` runs
each step's own commands (``RotationStep.commands``, built by the planner)
and dispatches on the step's ``RotationAction`` with a ``match`` whose
default branch is ``assert_never``, so mypy rejects an action without code.
A dry run never gets here: it ends with the plan.  Reading is in ``read``,
resolving interrupted journals in ``recover``.
"""

from __future__ import annotations

import datetime
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import assert_never

from ..errors import InputError, PendingRotation, RotationFailed, RotationRefused, ZfsError
from ..keys import Key
from ..owned import ROTATION_MARKER, refuse_live
from ..records import field, record
from ..zfs import Zfs
from .journal import Marker, Owner
from .lua import finish_program
from .plan import (
    Capabilities,
    ChangeKeyRequest,
    DatasetState,
    Rotation,
    RotationPlan,
    plan_rotation,
)
from .read import detect_capabilities, journal_properties, read_state
from .recover import recover
from .steps import RotationAction, RotationStep

__all__ = ["ChangeKeyResult", "PendingRotation", "RotationFailed", "execute", "plan_for",
           "rotate_keys"]  # the errors are errors.py's, re-exported for importers


@record(frozen=True)
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


def plan_for(zfs: Zfs, requests: Sequence[ChangeKeyRequest], *,
             recover_pending: bool = True) -> RotationPlan:
    """Read state (one ``zfs get``), detect capabilities, and plan.

    A journal an interrupted rotation left on a requested dataset is resolved
    first (``recover``: the next operation on a dataset finishes its old
    rotation) unless ``recover_pending`` is False, as for a dry run, which
    changes nothing and so plans against the pending journal (refused).

    Raises:
        OwnerAlive: a rotation of one of the datasets still runs (nothing changed).
        PendingRotation: a pending journal cannot be resolved without a key.
        InputError, StrategyUnavailable, RotationRefused: as ``plan_rotation``.
    """
    names = [str(r.dataset) for r in requests]
    parents = [str(r.dataset.parent) for r in requests if r.inherit and r.dataset.parent]
    user = journal_properties(requests)
    state = read_state(zfs, names + parents, user)
    pending = [n for n in names if n in state and state[n].marker is not None]
    for name in pending:  # a rotation still running is not ours to finish
        refuse_live(name, Marker.loads(state[name].marker or ""))
    if pending and recover_pending:
        for name in pending:
            recover(zfs, name)
        state = read_state(zfs, names + parents, user)
    probe_on = next((n for n in names if n in state
                     and state[n].props.get("encryption", "off") != "off"
                     and state[n].props.get("origin", "-") in ("", "-")), None)
    capabilities = (detect_capabilities(zfs, probe_on) if probe_on is not None
                    else Capabilities(False, False, True))
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return plan_rotation(requests, state, capabilities, owner=Owner.current(),
                         started=started, new_id=lambda: secrets.token_hex(8),
                         commands=zfs.commands)


def rotate_keys(zfs: Zfs, requests: Sequence[ChangeKeyRequest], *,
                say: Callable[[str], None] | None = None) -> list[ChangeKeyResult]:
    """Plan and execute.

    Raises:
        RotationFailed: some datasets were not rotated (``results`` has every dataset's).
        OwnerAlive, PendingRotation, InputError, StrategyUnavailable, RotationRefused:
            as ``plan_for`` and ``execute`` (nothing was changed).
        ZfsError: loading a current key or writing the journal failed.
    """
    plan = plan_for(zfs, requests)
    results = execute(zfs, plan, requests, say=say)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RotationFailed("; ".join(f"{r.dataset}: {r.error}" for r in failed),
                             results=results)
    return results


@record
class _Run:
    zfs: Zfs
    plan: RotationPlan
    requests: Mapping[str, ChangeKeyRequest]
    say: Callable[[str], None]
    errors: dict[str, str] = field(default_factory=dict)
    results: list[ChangeKeyResult] = field(default_factory=list)


def execute(zfs: Zfs, plan: RotationPlan, requests: Sequence[ChangeKeyRequest], *,
            say: Callable[[str], None] | None = None) -> list[ChangeKeyResult]:
    """Run ``plan``'s steps; every dataset ends rotated with its properties, or untouched.

    The plan must come from ``plan_rotation(..., commands=zfs.commands)``.  A
    dataset whose change-key fails is reported in its result (its journal is
    aborted); the others go on.

    Raises:
        InputError: the plan's commands name another zfs binary than ``zfs`` runs.
        RotationRefused: a ``file://`` keylocation holds another key (or, on a
            remote host, is a file there that cannot be checked from here), or the
            journal was not written (nothing was changed).
        ZfsError: loading a current key or a journal program failed.
    """
    program = zfs.commands.program
    if any(c.argv[0] != program for step in plan.steps for c in step.commands):
        raise InputError(f"the plan's commands run another zfs than {program!r}: plan with "
                         "plan_rotation(..., commands=zfs.commands)")
    run = _Run(zfs, plan, {str(r.dataset): r for r in requests}, say or (lambda _: None))
    for rotation in plan.rotations:
        _check_key_file(rotation, run.requests[rotation.dataset], zfs)
    for step in plan.steps:
        run.say(f"{step.action.value}: {step.subject}"
                + (f" ({step.detail})" if step.detail else ""))
        _run_step(run, step)
    return run.results


def _run_step(run: _Run, step: RotationStep) -> None:
    match step.action:
        case RotationAction.LOAD_KEY:
            load = run.requests[step.subject].load_key
            if load is None:
                raise InputError(f"{step.subject}: the plan loads the current key, but the "
                                 "request holds none")
            run.zfs.execute(step.commands[0], key=load)
        case RotationAction.WRITE_JOURNAL:
            _write_journal(run, step)
        case RotationAction.CHANGE_KEY:
            command = step.commands[0]
            key = run.requests[step.subject].key if command.secret_stdin else None
            try:
                run.zfs.execute(command, key=key)
            except ZfsError as exc:
                run.errors[step.subject] = str(exc)
        case RotationAction.COMMIT_JOURNAL:
            _commit_journal(run, step)
        case RotationAction.VERIFY:
            run.results = _verify(run)
        case _:
            assert_never(step.action)


def _check_key_file(rotation: Rotation, request: ChangeKeyRequest, zfs: Zfs) -> None:
    """With a ``file://`` keylocation ZFS reads the new key there: it must be the key given.

    On a remote host that file is the host's: it is not read over ssh, so the
    rotation is refused rather than run with a key nobody compared.
    """
    location = rotation.keylocation
    if request.key is None or not location.startswith("file://"):
        return
    if zfs.remote is not None:
        raise RotationRefused(f"{rotation.dataset}: keylocation {location} is a file on "
                              f"{zfs.remote.name}, where ZFS would read the new key; it is not "
                              "checked from here: use keylocation=prompt with the key given")
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


def _write_journal(run: _Run, step: RotationStep) -> None:
    """One program per pool writes every journal of the pool, or (on any problem) none."""
    result = run.zfs.run_program(step.commands[0], step.program)
    if not isinstance(result, dict) or not result.get("written"):
        errors = result.get("errors", {}) if isinstance(result, dict) else {}
        detail = "; ".join(f"{ds}: {msg}" for ds, msg in dict(errors).items())
        raise RotationRefused(f"the rotation journal was not written ({detail or result})")


def _commit_journal(run: _Run, step: RotationStep) -> None:
    """Commit the journals of the rotated datasets and abort the others, in one program:
    the planned one when every change-key succeeded, else the same command with aborts."""
    script = step.program
    if any(dataset in run.errors for dataset in step.datasets):
        markers = {r.dataset: r.marker for r in run.plan.rotations if r.marker is not None}
        script = finish_program({d: (markers[d].id, d not in run.errors)
                                 for d in step.datasets})
    result = run.zfs.run_program(step.commands[0], script)
    for dataset, outcome in (result or {}).items():
        if outcome not in ("committed", "aborted"):
            run.errors.setdefault(dataset, f"journal not resolved: {outcome}")


def _verify(run: _Run) -> list[ChangeKeyResult]:
    """Read every dataset once more and compare with the plan."""
    state = read_state(run.zfs, [r.dataset for r in run.plan.rotations],
                       journal_properties(list(run.requests.values())))
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
