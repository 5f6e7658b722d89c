"""Planning ``encroot receive --allow-encryption-change`` (pure).

``plan_receive`` turns (request, state, stream header) into a ``ReceivePlan``:
the checks that passed, notes, the steps ``execute`` runs with the zfs
commands each runs (``steps.py``), and what ZFS must show afterwards
(``Expected``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..names import DatasetName
from ..owned import Owner
from ..records import record
from ..stream import StreamInfo
from ..zfs import Command, ZfsCommands
from .state import (
    Props,
    ReceiveRefused,
    ReceiveRequest,
    TargetState,
    old_name,
    resumable,
    temp_name,
)
from .steps import (
    ReceiveAction,
    Step,
    direct_receive,
    mounted_deepest_first,
    replace_steps,
)

__all__ = ["Expected", "ReceivePlan", "encryption_of", "expected_datasets",
           "mounted_deepest_first", "plan_receive"]

# Properties a raw receive must take from the stream (libzfs: "encryption
# property '%s' cannot be set or excluded for raw streams"); keylocation may be set.
RAW_FIXED_PROPERTIES = ("encryption", "keyformat", "pbkdf2iters", "pbkdf2salt", "encryptionroot")

@record(frozen=True)
class Expected:
    """What one received dataset must look like, relative to the received top."""

    relative: str
    snapshots: Mapping[str, int]
    own_encryption_root: bool
    encrypted: bool | None  # None: whatever the parent gives it

    def name_under(self, top: str) -> str:
        return top if not self.relative else f"{top}/{self.relative}"


@record(frozen=True)
class ReceivePlan:
    """Everything ``execute`` will do, and what ZFS must show afterwards.

    ``owner`` is the process the plan's markers name: the one that executes it.
    """

    mode: str  # replace | create | incremental | resume
    target: str
    receive_into: str
    old: str | None
    stream: StreamInfo
    checks: tuple[str, ...]
    notes: tuple[str, ...]
    steps: tuple[Step, ...]
    expected: tuple[Expected, ...]
    old_encryption: Props | None
    owner: Owner
    parent_encryption: str = "off"

    @property
    def kept_old(self) -> str | None:
        """Where the old tree is kept (``--keep-old``), or None when it is destroyed."""
        keeps = any(step.action is ReceiveAction.KEEP_OLD for step in self.steps)
        return self.old if keeps else None

    @property
    def commands(self) -> tuple[Command, ...]:
        """Every step's commands, in the order the steps run them."""
        return tuple(command for step in self.steps for command in step.commands)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "target": self.target,
            "receive_into": self.receive_into,
            "old": self.old,
            "stream": self.stream.to_json(),
            "checks": list(self.checks),
            "notes": list(self.notes),
            "steps": [step.to_json() for step in self.steps],
            "old_encryption": self.old_encryption,
        }


def expected_datasets(stream: StreamInfo, snapshot: str | None = None
                      ) -> tuple[Expected, ...]:
    """What the stream promises about each dataset it brings (pure).

    ``snapshot``: the name a ``FS@SNAPSHOT`` target gives the received snapshot.
    """
    if not stream.package:
        name = snapshot or stream.tosnap
        snapshots = {name: stream.toguid} if name else {}
        return (Expected("", snapshots, own_encryption_root=stream.raw,
                         encrypted=True if stream.raw else None),)
    result = []
    encrypted_roots: list[str] = []
    for dataset in stream.datasets:
        relative = dataset.relative_to(stream.top)
        under_encrypted = any(relative == root or relative.startswith(root + "/")
                              or root == "" for root in encrypted_roots)
        if dataset.is_encroot and stream.raw:
            encrypted_roots.append(relative)
        encrypted = True if (stream.raw and (dataset.is_encroot or under_encrypted)) else None
        result.append(Expected(relative, {s.name: s.guid for s in dataset.snapshots},
                               own_encryption_root=dataset.is_encroot and stream.raw,
                               encrypted=encrypted))
    return tuple(result)


def _refuse(message: str) -> ReceiveRefused:
    return ReceiveRefused(message + "; nothing was changed")


def _check_properties(request: ReceiveRequest, stream: StreamInfo) -> str:
    if not stream.raw:
        return "property options: fine for a non-raw stream"
    for name in list(request.properties) + list(request.excluded):
        if name in RAW_FIXED_PROPERTIES:
            raise _refuse(f"property {name!r}: encryption properties cannot be set or "
                          "excluded for raw streams (only keylocation may be set)")
    if "keylocation" in request.excluded:
        raise _refuse("property 'keylocation': cannot be excluded for raw streams")
    return "property options: no encryption property is set or excluded (raw stream)"


def _check_feature(state: TargetState, stream: StreamInfo) -> str:
    pool = DatasetName(state.target).pool
    if stream.encrypted and state.pool_encryption_feature == "disabled":
        raise _refuse(f"pool {pool!r} has feature@encryption disabled and the stream is "
                      f"encrypted; enable it first: zpool set feature@encryption=enabled {pool}")
    return f"pool {pool}: feature@encryption is {state.pool_encryption_feature}"


def _descendants(state: TargetState) -> list[str]:
    return [n for n in state.tree if "@" not in n and n != state.target]


def _replace_checks(request: ReceiveRequest, state: TargetState,
                    stream: StreamInfo) -> tuple[list[str], list[str]]:
    """Checks for replacing an existing tree; returns (passed checks, notes)."""
    checks, notes = [], []
    target = state.target
    mounted = [n for n, p in state.tree.items() if p.get("mounted") == "yes"]
    if mounted and not request.no_mount:
        raise _refuse(f"target {target!r}: {', '.join(mounted)} mounted; pass -u to have "
                      "encroot unmount the old tree for the swap (the new one stays "
                      "unmounted)")
    checks.append("mounted: " + (f"{', '.join(mounted)} stay mounted until the swap (-u)"
                                 if mounted else "nothing mounted"))
    brought = {d.relative_to(stream.top) for d in stream.datasets} if stream.package else {""}
    extra = [n for n in _descendants(state) if n[len(target) + 1:] not in brought]
    kept = request.keep_old is not None
    problems = []
    if extra:
        problems.append(f"descendants the stream does not bring: {', '.join(extra)}")
    clones = sorted({c for n, p in state.tree.items() if "@" in n
                     for c in p.get("clones", "").split(",") if c and c != "-"
                     and not (c == target or c.startswith(target + "/"))})
    if clones:
        problems.append(f"clones of its snapshots: {', '.join(clones)}")
    held = [n for n, p in state.tree.items() if "@" in n and p.get("userrefs", "0") not in
            ("0", "-")]
    if held:
        problems.append(f"user holds on: {', '.join(held)}")
    if problems and not kept:
        raise _refuse(f"target {target!r} has " + "; ".join(problems)
                      + ". encroot does not destroy them: resolve them, or pass --keep-old "
                      "NAME to keep the old tree (with them) under NAME")
    notes += [f"kept under {request.keep_old}: {p}" for p in problems]
    checks.append("dependents: " + ("kept with the old tree" if problems else
                                    "no extra descendants, clones or holds"))
    return checks, notes


def plan_receive(request: ReceiveRequest, state: TargetState, stream: StreamInfo,
                 *, keep_old_exists: bool = False, owner: Owner | None = None,
                 commands: ZfsCommands | None = None) -> ReceivePlan:
    """Decide what ``encroot receive --allow-encryption-change`` does (pure).

    ``owner``: the process that will execute the plan, which its markers
    name (this one by default).  ``commands`` builds the steps' commands;
    pass ``zfs.commands`` of the ``Zfs`` that will execute the plan (the
    default names ``zfs`` on ``$PATH``, for showing a plan).

    Raises:
        ReceiveRefused: a precondition fails; the message names it.
    """
    target = DatasetName(request.target)
    if target.is_pool_root:
        raise _refuse(f"target {target!r} is a pool's root dataset, which user space cannot "
                      "rename or destroy; to move an encrypted pool root use `encroot "
                      "migrate SRC_POOL DST_POOL`")
    if state.needs_recovery(resuming=stream.resuming):
        raise _refuse(f"an interrupted encroot receive left state around {target!r}; "
                      f"run `encroot receive --recover {target}` first")
    if request.snapshot is not None and stream.package:
        raise _refuse(f"target {target}@{request.snapshot}: cannot specify snapshot name for "
                      "multi-snapshot stream (a replication package names its snapshots)")
    checks = [_check_feature(state, stream), _check_properties(request, stream)]
    if request.destination is not None:
        checks.append(f"target: {target}, named by the stream below {request.destination} "
                      f"({request.name_from_stream}, as zfs receive names it)")
    old_props = encryption_of(state.tree.get(target))
    expected = expected_datasets(stream, request.snapshot)
    build = commands or ZfsCommands()
    base: dict[str, Any] = {"stream": stream, "old_encryption": old_props,
                            "expected": expected, "owner": owner or Owner.current(),
                            "parent_encryption": (state.parent or {}).get("encryption", "off")}

    if stream.resuming:
        return _plan_resume(request, state, checks, base, build)
    if not state.exists:
        steps = (direct_receive(request, "zfs receive into the target (it does not exist)",
                                build),
                 Step(ReceiveAction.VERIFY, target,
                      "snapshot GUIDs and encryption as the stream says"))
        return ReceivePlan("create", target, target, None, checks=tuple(checks), notes=(),
                           steps=steps, **base)
    if not stream.full:
        return _plan_incremental(request, state, stream, checks, base, build)

    more_checks, notes = _replace_checks(request, state, stream)
    checks += more_checks
    old = old_name(request)
    if keep_old_exists:
        raise _refuse(f"--keep-old {old!r}: a dataset of that name exists")
    return ReceivePlan("replace", target, temp_name(target), old, checks=tuple(checks),
                       notes=tuple(notes), steps=_replace_steps(request, state, old, base,
                                                                build),
                       **base)


def _plan_incremental(request: ReceiveRequest, state: TargetState, stream: StreamInfo,
                      checks: list[str], base: dict[str, Any],
                      build: ZfsCommands) -> ReceivePlan:
    target = state.target
    if stream.raw and state.tree[target].get("encryption", "off") == "off":
        raise _refuse(f"target {target!r}: cannot perform raw receive on top of existing "
                      "unencrypted dataset (an incremental stream never crosses the "
                      "encryption boundary; send a full stream to replace it)")
    checks.append("incremental: applied by zfs receive onto the existing target")
    steps = (direct_receive(request, "zfs receive of the incremental stream", build),)
    return ReceivePlan("incremental", target, target, None, checks=tuple(checks), notes=(),
                       steps=steps, **base)


def _plan_resume(request: ReceiveRequest, state: TargetState, checks: list[str],
                 base: dict[str, Any], build: ZfsCommands) -> ReceivePlan:
    """A ``zfs send -t TOKEN`` stream continues an interrupted ``-s`` receive."""
    target = state.target
    if state.temp_resumable:
        more_checks, notes = _replace_checks(request, state, base["stream"])
        old = old_name(request)
        return ReceivePlan("replace", target, temp_name(target), old,
                           checks=tuple(checks + more_checks + ["resume: continues the "
                                                                "interrupted receive"]),
                           notes=tuple(notes),
                           steps=_replace_steps(request, state, old, base, build), **base)
    if resumable(state.tree.get(target)):
        steps = (direct_receive(request, "zfs receive -s resumes the interrupted receive",
                                build),)
        return ReceivePlan("resume", target, target, None, checks=tuple(checks), notes=(),
                           steps=steps, **base)
    raise _refuse(f"target {target!r}: the stream resumes an interrupted receive, but no "
                  "partial receive of this target is waiting (no receive_resume_token)")


def _replace_steps(request: ReceiveRequest, state: TargetState, old: str,
                   base: dict[str, Any], build: ZfsCommands) -> tuple[Step, ...]:
    stream: StreamInfo = base["stream"]
    # A raw stream's datasets arrive with their keys unloaded: MOUNT cannot mount them.
    mountable = stream.package or stream.objset_type == "filesystem"
    mount = [e.name_under(state.target) for e in base["expected"]
             if mountable and not e.encrypted]
    return replace_steps(request, state, old, stream, owner=base["owner"], commands=build,
                         mount=mount)


def encryption_of(props: Props | None) -> Props | None:
    if props is None:
        return None
    return {key: props.get(key, "-") for key in ("encryption", "encryptionroot", "keystatus")}


