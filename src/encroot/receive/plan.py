"""Planning ``encroot receive --allow-encryption-change`` (pure).

``plan_receive`` turns (request, state, stream header) into a ``ReceivePlan``:
the checks that passed, notes, the steps ``execute`` runs, and what ZFS must
show afterwards (``Expected``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..names import DatasetName
from ..owned import RECV_REPLACED, RECV_VERIFIED
from ..stream import StreamInfo
from .state import (
    Props,
    ReceiveRefused,
    ReceiveRequest,
    TargetState,
    old_name,
    resumable,
    temp_name,
)

__all__ = ["Expected", "ReceivePlan", "Step", "encryption_of", "expected_datasets",
           "mounted_deepest_first", "plan_receive"]

# Properties a raw receive must take from the stream (libzfs: "encryption
# property '%s' cannot be set or excluded for raw streams"); keylocation may be set.
RAW_FIXED_PROPERTIES = ("encryption", "keyformat", "pbkdf2iters", "pbkdf2salt", "encryptionroot")

@dataclass(frozen=True)
class Step:
    """One thing the executor does; ``action`` picks the function."""

    action: str
    dataset: str
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "dataset": self.dataset, "detail": self.detail}


@dataclass(frozen=True)
class Expected:
    """What one received dataset must look like, relative to the received top."""

    relative: str
    snapshots: Mapping[str, int]
    own_encryption_root: bool
    encrypted: bool | None  # None: whatever the parent gives it

    def name_under(self, top: str) -> str:
        return top if not self.relative else f"{top}/{self.relative}"


@dataclass(frozen=True)
class ReceivePlan:
    """Everything ``execute`` will do, and what ZFS must show afterwards."""

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
    parent_encryption: str = "off"

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
                 *, keep_old_exists: bool = False) -> ReceivePlan:
    """Decide what ``encroot receive --allow-encryption-change`` does (pure).

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
    base: dict[str, Any] = {"stream": stream, "old_encryption": old_props,
                            "expected": expected,
                            "parent_encryption": (state.parent or {}).get("encryption", "off")}

    if stream.resuming:
        return _plan_resume(request, state, checks, base)
    if not state.exists:
        steps = (Step("receive", target, "zfs receive into the target (it does not exist)"),
                 Step("verify", target, "snapshot GUIDs and encryption as the stream says"))
        return ReceivePlan("create", target, target, None, checks=tuple(checks), notes=(),
                           steps=steps, **base)
    if not stream.full:
        return _plan_incremental(request, state, stream, checks, base)

    more_checks, notes = _replace_checks(request, state, stream)
    checks += more_checks
    old = old_name(request)
    if keep_old_exists:
        raise _refuse(f"--keep-old {old!r}: a dataset of that name exists")
    return ReceivePlan("replace", target, temp_name(target), old, checks=tuple(checks),
                       notes=tuple(notes), steps=_replace_steps(request, state, old),
                       **base)


def _plan_incremental(request: ReceiveRequest, state: TargetState, stream: StreamInfo,
                      checks: list[str], base: dict[str, Any]) -> ReceivePlan:
    target = state.target
    if stream.raw and state.tree[target].get("encryption", "off") == "off":
        raise _refuse(f"target {target!r}: cannot perform raw receive on top of existing "
                      "unencrypted dataset (an incremental stream never crosses the "
                      "encryption boundary; send a full stream to replace it)")
    checks.append("incremental: applied by zfs receive onto the existing target")
    steps = (Step("receive", target, "zfs receive of the incremental stream"),)
    return ReceivePlan("incremental", target, target, None, checks=tuple(checks), notes=(),
                       steps=steps, **base)


def _plan_resume(request: ReceiveRequest, state: TargetState, checks: list[str],
                 base: dict[str, Any]) -> ReceivePlan:
    """A ``zfs send -t TOKEN`` stream continues an interrupted ``-s`` receive."""
    target = state.target
    if state.temp_resumable:
        more_checks, notes = _replace_checks(request, state, base["stream"])
        old = old_name(request)
        return ReceivePlan("replace", target, temp_name(target), old,
                           checks=tuple(checks + more_checks + ["resume: continues the "
                                                                "interrupted receive"]),
                           notes=tuple(notes), steps=_replace_steps(request, state, old),
                           **base)
    if resumable(state.tree.get(target)):
        steps = (Step("receive", target, "zfs receive -s resumes the interrupted receive"),)
        return ReceivePlan("resume", target, target, None, checks=tuple(checks), notes=(),
                           steps=steps, **base)
    raise _refuse(f"target {target!r}: the stream resumes an interrupted receive, but no "
                  "partial receive of this target is waiting (no receive_resume_token)")


def _replace_steps(request: ReceiveRequest, state: TargetState, old: str) -> tuple[Step, ...]:
    target = state.target
    temp = temp_name(target)
    mounted = mounted_deepest_first(state.tree)
    steps = [
        Step("receive", temp, f"zfs receive -u -o {RECV_VERIFIED}=<receiving marker> into "
                              "the temporary sibling (the marker names this process)"
                              + ("; the old tree stays mounted" if mounted else "")),
        Step("verify", temp, "snapshot GUIDs and encryption as the stream says"),
        Step("mark-verified", temp, f"{RECV_VERIFIED}=<verified marker: stream GUID, "
                                    "keep-old NAME>"),
        Step("unmount", target, "the old tree, deepest first, for the swap only: "
                                + (", ".join(mounted) if mounted else "what is mounted then")),
        Step("mark-replaced", target, f"{RECV_REPLACED}=<replaced marker: {target}>"),
        Step("rename", target, old),
        Step("rename", temp, target),
        Step("keep-old" if request.keep_old else "destroy-old", old,
             "old tree kept" if request.keep_old else "zfs destroy -r"),
        Step("clear-verified", target, f"zfs inherit {RECV_VERIFIED}"),
    ]
    if not request.no_mount:
        steps.append(Step("mount", target, "file systems whose keys are loaded"))
    return tuple(steps)


def mounted_deepest_first(tree: dict[str, Props]) -> list[str]:
    """The mounted file systems of a tree, children before their parents."""
    return sorted((n for n, p in tree.items() if p.get("mounted") == "yes"),
                  key=lambda n: (-n.count("/"), n))


def encryption_of(props: Props | None) -> Props | None:
    if props is None:
        return None
    return {key: props.get(key, "-") for key in ("encryption", "encryptionroot", "keystatus")}


