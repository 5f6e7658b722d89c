"""``encroot receive``: ``zfs receive``, plus a safe way across the encryption boundary.

Without ``allow_encryption_change`` a receive is plain ``zfs receive`` with
the same options (same results, same errors).  With it, a *full* stream may
replace an existing target whose encryption state differs, which stock
OpenZFS refuses.  encroot receives into a sibling temporary, verifies it,
and swaps by renames; the old data is destroyed only after the new data is
complete and verified.  docs/design.md lays out the steps, the names and
markers encroot owns, and how every interrupted state is recovered.

The module has three parts: reading ZFS state (``read_state``, a few bulk
calls), planning (``plan_receive``, pure), and executing (``execute``,
``recover``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DatasetNotFound, EncrootError, InputError, ZfsError
from .names import DatasetName
from .stream import StreamInfo
from .zfs import Result, Zfs
from .zfs.parse import PropertyTable

__all__ = [
    "MARK_REPLACED",
    "MARK_VERIFIED",
    "ReceivePlan",
    "ReceiveRefused",
    "ReceiveRequest",
    "ReceiveResult",
    "RecoveryReport",
    "TargetState",
    "VerificationFailed",
    "execute",
    "plan_receive",
    "read_state",
    "recover",
    "temp_name",
]

TEMP_SUFFIX = ".encroot-recv"
OLD_SUFFIX = ".encroot-old"
MARK_VERIFIED = "encroot:recv-verified"
MARK_REPLACED = "encroot:recv-replaced"
# Properties a raw receive must take from the stream (libzfs: "encryption
# property '%s' cannot be set or excluded for raw streams"); keylocation may be set.
RAW_FIXED_PROPERTIES = ("encryption", "keyformat", "pbkdf2iters", "pbkdf2salt", "encryptionroot")
STATE_PROPERTIES = (
    "type", "encryption", "encryptionroot", "keystatus", "mounted", "canmount", "mountpoint",
    "guid", "userrefs", "clones", "receive_resume_token", MARK_VERIFIED, MARK_REPLACED,
)


class ReceiveRefused(EncrootError):
    """A precondition failed; nothing was changed.  The message says which and why."""


class VerificationFailed(EncrootError):
    """What ZFS shows after the receive differs from what the stream promised."""


@dataclass(frozen=True)
class ReceiveRequest:
    """What the caller asked for, validated (the ``zfs receive`` options plus encroot's)."""

    target: DatasetName
    force: bool = False
    no_mount: bool = False
    verbose: bool = False
    dry_run: bool = False
    resumable: bool = False
    properties: Mapping[str, str] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    allow_encryption_change: bool = False
    keep_old: DatasetName | None = None

    def __post_init__(self) -> None:
        if self.allow_encryption_change and not self.force:
            raise InputError("--allow-encryption-change requires -F (it replaces the target)",
                             subject="--allow-encryption-change")
        if self.keep_old is not None and not self.allow_encryption_change:
            raise InputError("--keep-old goes with --allow-encryption-change",
                             subject="--keep-old")
        if self.keep_old is not None and (self.keep_old == self.target or
                                          self.keep_old.is_descendant_of(self.target)):
            raise InputError(f"--keep-old {self.keep_old!r}: must be outside the target",
                             subject="--keep-old")

    def zfs_flags(self) -> list[str]:
        """The plain ``zfs receive`` flags this request carries."""
        pairs = (("-F", self.force), ("-u", self.no_mount), ("-v", self.verbose),
                 ("-n", self.dry_run), ("-s", self.resumable))
        return [flag for flag, wanted in pairs if wanted]


def temp_name(target: str) -> DatasetName:
    """Where the new tree is received: a sibling of the target that encroot owns."""
    try:
        return DatasetName(target + TEMP_SUFFIX)
    except InputError as exc:
        raise InputError(f"target {target!r}: too long to add encroot's temporary suffix "
                         f"{TEMP_SUFFIX!r} within 255 bytes", subject=target) from exc


def old_name(request: ReceiveRequest) -> DatasetName:
    if request.keep_old is not None:
        return request.keep_old
    try:
        return DatasetName(request.target + OLD_SUFFIX)
    except InputError as exc:
        raise InputError(f"target {request.target!r}: too long to add {OLD_SUFFIX!r}",
                         subject=request.target) from exc


# -- state -------------------------------------------------------------------------------


Props = dict[str, str]


@dataclass(frozen=True)
class TargetState:
    """What ZFS shows around a target, read in a few bulk calls.

    Each tree maps dataset and snapshot names to their property values.
    """

    target: str
    pool_encryption_feature: str
    parent: Props | None
    tree: dict[str, Props]
    temp: dict[str, Props]
    marked_old: dict[str, Props]

    @property
    def exists(self) -> bool:
        return self.target in self.tree

    @property
    def temp_resumable(self) -> bool:
        """The temporary holds a partial receive that ``zfs send -t`` can resume."""
        return _resumable(self.temp.get(temp_name(self.target)))

    def needs_recovery(self, *, resuming: bool = False) -> bool:
        """An interrupted replacement left names or markers to clean up first.

        A resumable temporary is not in the way of a stream that resumes it.
        """
        if self.temp and not (resuming and self.temp_resumable):
            return True
        top = self.tree.get(self.target)
        return (bool(self.marked_old) or _marked_here(top, MARK_VERIFIED)
                or _marked_here(top, MARK_REPLACED))


def _values(table: PropertyTable) -> dict[str, Props]:
    """Property values by dataset; for encroot's markers also ``"<marker> source"``."""
    result: dict[str, Props] = {}
    for name, props in table.datasets.items():
        values = {p: v.value for p, v in props.items()}
        for marker in (MARK_VERIFIED, MARK_REPLACED):
            if marker in props:
                values[f"{marker} source"] = props[marker].source
        result[name] = values
    return result


def _marked_here(props: Props | None, marker: str) -> bool:
    """True when ``marker`` is set on this dataset itself (not inherited)."""
    return props is not None and props.get(f"{marker} source") == "local"


def _get(zfs: Zfs, names: Sequence[str], **options: Any) -> dict[str, Props]:
    """A bulk read in table form (no `zfs version` probe needed); {} if a name is missing."""
    try:
        return _values(zfs.get(names, STATE_PROPERTIES, use_json=False, **options))
    except DatasetNotFound:
        return {}


def _tree(zfs: Zfs, name: str) -> dict[str, Props]:
    return _get(zfs, [name], recursive=True, types=("filesystem", "volume", "snapshot"))


def read_state(zfs: Zfs, target: DatasetName) -> TargetState:
    """Read the target's tree, its parent, encroot's temporaries and the pool feature.

    Three processes in the common case: the pool feature, the parent with its
    direct children (target, temporary, old tree), and the target's tree.
    """
    feature = zfs.pool_get(target.pool, ["feature@encryption"]).get("feature@encryption", "-")
    family = _get(zfs, [target.parent], depth=1, types=("filesystem", "volume")) \
        if target.parent is not None else {}
    temp = temp_name(target)
    tree = _tree(zfs, target) if target in family or target.parent is None else {}
    temp_tree = _tree(zfs, temp) if temp in family else {}
    marked_old: dict[str, Props] = {}
    for candidate in _old_candidates(target, family, tree, temp_tree):
        props = family.get(candidate) or _get(zfs, [candidate]).get(candidate)
        if props is not None and props.get(MARK_REPLACED) == target and \
                _marked_here(props, MARK_REPLACED):
            marked_old.update(_tree(zfs, candidate))
    return TargetState(target, feature, family.get(target.parent or ""), tree, temp_tree,
                       marked_old)


def _old_candidates(target: DatasetName, family: dict[str, Props], tree: dict[str, Props],
                    temp_tree: dict[str, Props]) -> list[str]:
    """Where an interrupted run may have put the old tree: the sibling name, or the
    ``--keep-old`` name recorded in a verified marker."""
    candidates = [target + OLD_SUFFIX] if target + OLD_SUFFIX in family else []
    for props in (temp_tree.get(temp_name(target)), tree.get(target)):
        kept = _kept_name(props.get(MARK_VERIFIED, "")) if props else None
        if kept and kept not in candidates:
            candidates.append(kept)
    return candidates


# -- planning (pure) ---------------------------------------------------------------------


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


def expected_datasets(stream: StreamInfo) -> tuple[Expected, ...]:
    """What the stream promises about each dataset it brings (pure)."""
    if not stream.package:
        snapshots = {stream.tosnap: stream.toguid} if stream.tosnap else {}
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
                      "encroot unmount the old tree (the new one stays unmounted)")
    checks.append("mounted: " + (f"will unmount {', '.join(mounted)} (-u)" if mounted
                                 else "nothing mounted"))
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
    checks = [_check_feature(state, stream), _check_properties(request, stream)]
    old_props = _encryption_of(state.tree.get(target))
    expected = expected_datasets(stream)
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
    if _resumable(state.tree.get(target)):
        steps = (Step("receive", target, "zfs receive -s resumes the interrupted receive"),)
        return ReceivePlan("resume", target, target, None, checks=tuple(checks), notes=(),
                           steps=steps, **base)
    raise _refuse(f"target {target!r}: the stream resumes an interrupted receive, but no "
                  "partial receive of this target is waiting (no receive_resume_token)")


def _replace_steps(request: ReceiveRequest, state: TargetState, old: str) -> tuple[Step, ...]:
    target = state.target
    temp = temp_name(target)
    mounted = sorted((n for n, p in state.tree.items() if p.get("mounted") == "yes"),
                     key=lambda n: -n.count("/"))
    steps = [Step("unmount", name, "old tree, deepest first") for name in mounted]
    steps += [
        Step("receive", temp, "zfs receive -u into the temporary sibling"),
        Step("verify", temp, "snapshot GUIDs and encryption as the stream says"),
        Step("mark-verified", temp, f"{MARK_VERIFIED}=<stream GUID> [keep-old=NAME]"),
        Step("mark-replaced", target, f"{MARK_REPLACED}={target}"),
        Step("rename", target, old),
        Step("rename", temp, target),
        Step("keep-old" if request.keep_old else "destroy-old", old,
             "old tree kept" if request.keep_old else "zfs destroy -r"),
        Step("clear-verified", target, f"zfs inherit {MARK_VERIFIED}"),
    ]
    if not request.no_mount:
        steps.append(Step("mount", target, "file systems whose keys are loaded"))
    return tuple(steps)


def _encryption_of(props: Props | None) -> Props | None:
    if props is None:
        return None
    return {key: props.get(key, "-") for key in ("encryption", "encryptionroot", "keystatus")}


# -- execution -----------------------------------------------------------------------------


@dataclass
class ReceiveResult:
    """What a receive did, for humans (``lines``) and machines (``to_json``)."""

    plan: ReceivePlan
    new_encryption: Props | None = None
    snapshots: list[str] = field(default_factory=list)
    recovery: RecoveryReport | None = None
    zfs_output: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.plan.target,
            "mode": self.plan.mode,
            "old_encryption": self.plan.old_encryption,
            "new_encryption": self.new_encryption,
            "snapshots": self.snapshots,
            "kept_old": self.plan.old if self.plan.steps and any(
                s.action == "keep-old" for s in self.plan.steps) else None,
            "recovery": self.recovery.actions if self.recovery else [],
            "plan": self.plan.to_json(),
        }


@dataclass
class _Context:
    zfs: Zfs
    request: ReceiveRequest
    plan: ReceivePlan
    stream_fd: int
    say: Callable[[str], None]
    unmounted: list[str] = field(default_factory=list)
    zfs_output: str = ""
    verified: dict[str, Props] = field(default_factory=dict)


def execute(zfs: Zfs, request: ReceiveRequest, plan: ReceivePlan, stream_fd: int, *,
            say: Callable[[str], None] = lambda line: None) -> ReceiveResult:
    """Run the plan's steps; on failure before the swap, undo; after it, recover.

    Raises:
        ZfsError: a zfs command failed (after undo or recovery; the message says which).
        VerificationFailed: the received data did not match the stream.
    """
    context = _Context(zfs, request, plan, stream_fd, say)
    swapped = False
    try:
        for step in plan.steps:
            say(f"{step.action}: {step.dataset}" + (f" ({step.detail})" if step.detail else ""))
            _ACTIONS[step.action](context, step)
            swapped = swapped or step.action == "mark-replaced"
    except BaseException:
        if plan.mode == "replace" and not swapped:
            _undo_before_swap(context)
        elif plan.mode == "replace":
            _recover_after_failure(zfs, DatasetName(plan.target), say)
        raise
    final = _as_final(context.verified, plan) if context.verified else _tree(zfs, plan.target)
    return ReceiveResult(plan, _encryption_of(final.get(plan.target)),
                         sorted(n for n in final if "@" in n), zfs_output=context.zfs_output)


def _as_final(verified: dict[str, Props], plan: ReceivePlan) -> dict[str, Props]:
    """What verification read under the receive name, renamed to the target's names."""
    def rename(name: str) -> str:
        if name == plan.receive_into or name.startswith(plan.receive_into + "/") or \
                name.startswith(plan.receive_into + "@"):
            return plan.target + name[len(plan.receive_into):]
        return name
    return {rename(name): {key: rename(value) if key == "encryptionroot" else value
                           for key, value in props.items()}
            for name, props in verified.items()}


def _recover_after_failure(zfs: Zfs, target: DatasetName, say: Callable[[str], None]) -> None:
    """After the swap began, finish or undo it; report, never mask the original error."""
    try:
        report = recover(zfs, target, say=say)
    except EncrootError as exc:
        say(f"recovery did not finish ({exc}); run `encroot receive --recover {target}`")
        return
    say(f"recovered after the failure: {'; '.join(report.actions) or 'nothing to do'}")


def _undo_before_swap(context: _Context) -> None:
    """The old tree is untouched: drop the temporary and mount what we unmounted."""
    temp = temp_name(context.plan.target)
    props = _get(context.zfs, [temp]).get(temp)
    keep_partial = context.request.resumable and _resumable(props)
    if props is not None and not keep_partial:
        context.zfs.destroy(temp, recursive=True)
    for name in reversed(context.unmounted):
        try:
            context.zfs.mount(name)
        except ZfsError as exc:
            context.say(f"could not mount {name} again: {exc}")


def _resumable(props: Props | None) -> bool:
    """The dataset holds a partial ``-s`` receive that ``zfs send -t`` can resume."""
    return props is not None and props.get("receive_resume_token", "-") not in ("-", "")


def _do_unmount(context: _Context, step: Step) -> None:
    context.zfs.unmount(step.dataset)
    context.unmounted.append(step.dataset)


def _do_receive(context: _Context, step: Step) -> None:
    request = context.request
    options = ["-u"] if context.plan.mode == "replace" else request.zfs_flags()
    if context.plan.mode == "replace" and request.resumable:
        options.append("-s")
    if context.plan.mode == "replace" and request.verbose:
        options.append("-v")
    result: Result = context.zfs.receive(step.dataset, context.stream_fd, options=options,
                                         properties=request.properties,
                                         excluded=request.excluded)
    context.zfs_output += result.stdout


def _do_verify(context: _Context, step: Step) -> None:
    problems, context.verified = verify(context.zfs, step.dataset, context.plan)
    if problems:
        raise VerificationFailed(f"received data under {step.dataset!r} does not match the "
                                 f"stream: {'; '.join(problems)}")


def verify(zfs: Zfs, top: str, plan: ReceivePlan) -> tuple[list[str], dict[str, Props]]:
    """Compare what ZFS shows under ``top`` with what the stream promised.

    Returns the problems found and the properties read (one ``zfs get``).
    """
    table = _tree(zfs, top)
    problems = []
    for expected in plan.expected:
        problems += _verify_one(table, expected, top, plan.parent_encryption)
    return problems, table


def _verify_one(table: dict[str, Props], expected: Expected, top: str,
                parent_encryption: str) -> list[str]:
    name = expected.name_under(top)
    if name not in table:
        return [f"{name} is missing"]
    problems = []
    for snap, guid in expected.snapshots.items():
        got = table.get(f"{name}@{snap}", {}).get("guid")
        if got != str(guid):
            problems.append(f"{name}@{snap} has GUID {got}, the stream says {guid}")
    props = table[name]
    if expected.own_encryption_root:
        if props.get("encryptionroot") != name:
            problems.append(f"{name} has encryptionroot {props.get('encryptionroot')}, "
                            "expected itself")
        if props.get("keystatus") != "unavailable":
            problems.append(f"{name} keystatus is {props.get('keystatus')}, expected "
                            "unavailable after a raw receive")
    if expected.encrypted and props.get("encryption") in (None, "off"):
        problems.append(f"{name} is not encrypted, the raw stream is")
    if expected.encrypted is None and expected.relative == "" and not expected.own_encryption_root:
        if (props.get("encryption") == "off") != (parent_encryption == "off"):
            problems.append(f"{name} encryption is {props.get('encryption')}, its parent's is "
                            f"{parent_encryption}")
    return problems


def _do_mark_verified(context: _Context, step: Step) -> None:
    value = _stream_guid(context.plan.stream)
    if context.request.keep_old is not None:
        value += f" keep-old={context.request.keep_old}"
    context.zfs.set(step.dataset, {MARK_VERIFIED: value})


def _kept_name(verified_marker: str) -> str | None:
    """The ``--keep-old`` name recorded in a verified marker, if the caller gave one."""
    for word in verified_marker.split()[1:]:
        if word.startswith("keep-old="):
            return word[len("keep-old="):]
    return None


def _stream_guid(stream: StreamInfo) -> str:
    if not stream.package:
        return str(stream.toguid)
    top = stream.datasets[0] if stream.datasets else None
    snaps = {s.name: s.guid for s in top.snapshots} if top else {}
    return str(snaps.get(stream.tosnap or "", 0))


def _do_mark_replaced(context: _Context, step: Step) -> None:
    context.zfs.set(step.dataset, {MARK_REPLACED: context.plan.target})


def _do_rename(context: _Context, step: Step) -> None:
    _rename(context.zfs, step.dataset, step.detail)


def _rename(zfs: Zfs, source: str, target: str) -> None:
    """Rename and let ZFS remount what was mounted, so no file system stays mounted at
    the path of a name it no longer has (unmounted trees stay unmounted)."""
    zfs.rename(source, target, no_remount=False)


def _do_destroy_old(context: _Context, step: Step) -> None:
    context.zfs.destroy(step.dataset, recursive=True)


def _do_keep_old(context: _Context, step: Step) -> None:
    context.zfs.inherit(step.dataset, MARK_REPLACED)


def _do_clear_verified(context: _Context, step: Step) -> None:
    context.zfs.inherit(step.dataset, MARK_VERIFIED)


def _do_mount(context: _Context, step: Step) -> None:
    table = _values(context.zfs.get([step.dataset], ("canmount", "mountpoint", "keystatus",
                                                     "mounted"),
                                    recursive=True, types=("filesystem",)))
    for name, props in table.items():
        mountable = (props.get("canmount") == "on" and props.get("mounted") == "no"
                     and props.get("mountpoint") not in ("none", "legacy")
                     and props.get("keystatus") in ("available", "-"))
        if mountable:
            context.zfs.mount(name)


_ACTIONS: dict[str, Callable[[_Context, Step], None]] = {
    "unmount": _do_unmount,
    "receive": _do_receive,
    "verify": _do_verify,
    "mark-verified": _do_mark_verified,
    "mark-replaced": _do_mark_replaced,
    "rename": _do_rename,
    "destroy-old": _do_destroy_old,
    "keep-old": _do_keep_old,
    "clear-verified": _do_clear_verified,
    "mount": _do_mount,
}


# -- recovery ---------------------------------------------------------------------------------


@dataclass
class RecoveryReport:
    target: str
    actions: list[str] = field(default_factory=list)


def recover(zfs: Zfs, target: DatasetName, *, keep_resumable: bool = False,
            say: Callable[[str], None] = lambda line: None) -> RecoveryReport:
    """Bring an interrupted replacement of ``target`` to a clean end (see docs/design.md).

    Rolls forward from verified state, rolls back otherwise; never destroys
    the only copy of anything.  Idempotent: a second call finds nothing to do.
    """
    report = RecoveryReport(str(target))
    for _ in range(6):  # each pass moves one state forward; six is more than the table has
        state = read_state(zfs, target)
        action = _next_recovery_action(state, keep_resumable)
        if action is None:
            return report
        description, run = action
        say(f"recover: {description}")
        run(zfs)
        report.actions.append(description)
    raise EncrootError(f"recovery of {target!r} did not converge; inspect with `zfs list -r "
                       f"{target.pool}` and docs/design.md")


_Action = tuple[str, Callable[[Zfs], None]]


def _next_recovery_action(state: TargetState, keep_resumable: bool) -> _Action | None:
    """The one step that moves an interrupted replacement forward (the table in design.md)."""
    target = DatasetName(state.target)
    temp = temp_name(target)
    temp_verified = _marked_here(state.temp.get(temp), MARK_VERIFIED)
    old = _marked_old_top(state)
    if old is not None:
        return _recover_with_old(state, target, temp, temp_verified, old)
    if state.temp:
        if temp_verified and _all_unmounted(state):
            kept = _kept_name(state.temp[temp].get(MARK_VERIFIED, ""))
            aside = DatasetName(kept) if kept else DatasetName(target + OLD_SUFFIX)
            return (f"swap in verified {temp}: move {target} aside to {aside}",
                    lambda z: _mark_and_rename(z, target, aside))
        if keep_resumable and state.temp_resumable:
            return None
        return (f"destroy the unfinished temporary {temp}",
                lambda z: z.destroy(temp, recursive=True))
    for marker in (MARK_VERIFIED, MARK_REPLACED):
        if _marked_here(state.tree.get(target), marker):
            return (f"clear {marker} on {target}",
                    lambda z, m=marker: z.inherit(target, m))
    return None


def _marked_old_top(state: TargetState) -> DatasetName | None:
    tops = sorted((n for n in state.marked_old
                   if "@" not in n and _marked_here(state.marked_old[n], MARK_REPLACED)),
                  key=lambda n: n.count("/"))
    return DatasetName(tops[0]) if tops else None


def _recover_with_old(state: TargetState, target: DatasetName, temp: DatasetName,
                      temp_verified: bool, old: DatasetName) -> _Action:
    if not state.exists:
        if temp_verified:
            return (f"rename verified {temp} to {target}", lambda z: _rename(z, temp, target))
        return (f"restore the old tree: rename {old} to {target}",
                lambda z: _rename_and_unmark(z, old, target))
    if not old.endswith(OLD_SUFFIX):
        return (f"keep the old tree as {old}", lambda z: z.inherit(old, MARK_REPLACED))
    return (f"destroy the replaced tree {old}", lambda z: z.destroy(old, recursive=True))


def _mark_and_rename(zfs: Zfs, target: DatasetName, aside: DatasetName) -> None:
    zfs.set(target, {MARK_REPLACED: target})
    _rename(zfs, target, aside)


def _rename_and_unmark(zfs: Zfs, old: DatasetName, target: DatasetName) -> None:
    _rename(zfs, old, target)
    zfs.inherit(target, MARK_REPLACED)


def _all_unmounted(state: TargetState) -> bool:
    return not any(p.get("mounted") == "yes" for p in state.tree.values())


def run_plain(zfs: Zfs, request: ReceiveRequest, stream_fd: int) -> Result:
    """Plain ``zfs receive`` with the request's options; the result is ZFS's own."""
    return zfs.receive(request.target, stream_fd, options=request.zfs_flags(),
                       properties=request.properties, excluded=request.excluded, check=False)


def pass_options(values: Sequence[str]) -> dict[str, str]:
    """Parse ``-o prop=value`` options into a mapping (validation happens in the layer)."""
    result: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise InputError(f"-o {value!r}: expected property=value", subject="-o")
        result[name] = text
    return result


@dataclass
class Outcome:
    """The end of ``receive_stream``: exactly one of the fields is set.

    ``plain``: the result of a plain ``zfs receive`` (no encryption change
    asked); ``plan``: a dry run's plan; ``result``: what a receive did.
    """

    plain: Result | None = None
    plan: ReceivePlan | None = None
    result: ReceiveResult | None = None
    recovery: RecoveryReport | None = None


def receive_stream(zfs: Zfs, request: ReceiveRequest, stream_fd: int, *,
                   say: Callable[[str], None] = lambda line: None) -> Outcome:
    """``encroot receive``: plain ``zfs receive``, or the safe cross-boundary replacement.

    Raises:
        StreamError: the stream's header is unreadable (nothing was changed).
        ReceiveRefused: a precondition failed (nothing was changed).
        VerificationFailed, ZfsError: the receive failed; the old target is intact.
    """
    if not request.allow_encryption_change:
        return Outcome(plain=run_plain(zfs, request, stream_fd))
    from .stream import peek_stream

    peeked = peek_stream(stream_fd)
    try:
        say(f"stream: {_describe_stream(peeked.info)} (header read by {peeked.method})")
        state = read_state(zfs, request.target)
        recovery = None
        if state.needs_recovery(resuming=peeked.info.resuming) and not request.dry_run:
            recovery = recover(zfs, request.target, keep_resumable=peeked.info.resuming,
                               say=say)
            state = read_state(zfs, request.target)
        keep_old_exists = request.keep_old is not None and zfs.exists(request.keep_old)
        plan = plan_receive(request, state, peeked.info, keep_old_exists=keep_old_exists)
        if request.dry_run:
            return Outcome(plan=plan, recovery=recovery)
        result = execute(zfs, request, plan, peeked.fd, say=say)
        result.recovery = recovery
        return Outcome(result=result, recovery=recovery)
    finally:
        peeked.finish()


def _describe_stream(info: StreamInfo) -> str:
    kind = "replication package" if info.package else "stream"
    return (f"{'full' if info.full else 'incremental'} {'raw ' if info.raw else ''}{kind} "
            f"of {info.toname}")
