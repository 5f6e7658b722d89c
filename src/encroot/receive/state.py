"""What ``encroot receive`` reads: the request, the names it owns, the target's state.

``read_state`` reads the target's tree, its parent's children (temporary and
old tree among them) and the pool feature in a few bulk ``zfs get`` calls.
``TargetState`` keeps the raw values and interprets encroot's markers only
through ``encroot.owned.parse_marker``: a marker set locally on a dataset is
encroot's when it parses; anything else is not encroot's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DatasetNotFound, InputError, ReceiveRefused, VerificationFailed
from ..names import DatasetName
from ..owned import (
    RECV_OLD_SUFFIX,
    RECV_REPLACED,
    RECV_SUFFIX,
    RECV_VERIFIED,
    Marker,
    NotOurs,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    foreign_owner,
    parse_marker,
    refuse_live,
)
from ..records import field, record, replace
from ..stream import StreamInfo
from ..zfs import Zfs
from ..zfs.parse import PropertyTable
from .target import NAME_FROM_STREAM, derived_target, split_target

__all__ = [
    "Props",
    "ReceiveRefused",
    "ReceiveRequest",
    "TargetState",
    "VerificationFailed",
    "local_marker",
    "old_name",
    "read_state",
    "temp_name",
]

MARKERS = (RECV_VERIFIED, RECV_REPLACED)
STATE_PROPERTIES = (
    "type", "encryption", "encryptionroot", "keystatus", "mounted", "canmount", "mountpoint",
    "guid", "userrefs", "clones", "receive_resume_token", *MARKERS,
)


@record(frozen=True)
class ReceiveRequest:
    """What the caller asked for, validated (the ``zfs receive`` options plus encroot's).

    ``target`` is the file system the stream's top lands in.  With
    ``name_from_stream`` (``-d`` or ``-e``) it is first the destination below
    which the stream's name decides; ``for_stream`` derives the real target
    (as zfs does) and keeps the destination in ``destination``.  ``snapshot``
    names the received snapshot (a ``FILESYSTEM@SNAPSHOT`` target).
    """

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
    snapshot: str | None = None
    name_from_stream: str = ""
    destination: DatasetName | None = None

    def __post_init__(self) -> None:
        if self.name_from_stream not in ("", *NAME_FROM_STREAM):
            raise InputError(f"receive flag {self.name_from_stream!r}: use -d or -e",
                             subject=self.name_from_stream)
        if self.snapshot is not None:
            split_target(f"{self.target}@{self.snapshot}", self.name_from_stream)
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
        if self.allow_encryption_change and "origin" in self.properties:
            raise InputError("-o origin=...: receiving as a clone is zfs receive's own form; "
                             "--allow-encryption-change does not take it", subject="origin")
        for name in (*self.properties, *self.excluded):
            if name in MARKERS:
                raise InputError(f"property {name!r}: encroot's own marker; it cannot be "
                                 "set or excluded", subject=name)

    def zfs_flags(self) -> list[str]:
        """The plain ``zfs receive`` flags this request carries (``-d``/``-e`` included)."""
        pairs = (("-F", self.force), ("-u", self.no_mount), ("-v", self.verbose),
                 ("-n", self.dry_run), ("-s", self.resumable))
        return [flag for flag, wanted in pairs if wanted] + (
            [self.name_from_stream] if self.name_from_stream else [])

    def for_stream(self, stream: StreamInfo) -> ReceiveRequest:
        """This request with the target zfs derives from ``stream`` for ``-d``/``-e``.

        Raises:
            InputError: the derived name is not valid.
        """
        if not self.name_from_stream or self.destination is not None:
            return self
        target = derived_target(self.target, stream.toname, self.name_from_stream)
        return replace(self, target=target, destination=self.target)

    def zfs_target(self, dataset: str | None = None) -> str:
        """What ``zfs receive`` is given: the -d/-e destination when receiving into the
        target itself, else ``dataset`` (the target by default) with ``@SNAPSHOT``."""
        if dataset is None and self.destination is not None:
            return self.destination
        name = self.target if dataset is None else dataset
        return f"{name}@{self.snapshot}" if self.snapshot else name


def temp_name(target: str) -> DatasetName:
    """Where the new tree is received: a sibling of the target that encroot owns.

    Raises:
        InputError: the target's name leaves no room for the suffix.
    """
    try:
        return DatasetName(target + RECV_SUFFIX)
    except InputError as exc:
        raise InputError(f"target {target!r}: too long to add encroot's temporary suffix "
                         f"{RECV_SUFFIX!r} within 255 bytes", subject=target) from exc


def old_name(request: ReceiveRequest) -> DatasetName:
    """Where the old tree goes: ``--keep-old NAME`` or ``X.encroot-old``.

    Raises:
        InputError: the target's name leaves no room for the suffix.
    """
    if request.keep_old is not None:
        return request.keep_old
    try:
        return DatasetName(request.target + RECV_OLD_SUFFIX)
    except InputError as exc:
        raise InputError(f"target {request.target!r}: too long to add {RECV_OLD_SUFFIX!r}",
                         subject=request.target) from exc


Props = dict[str, str]


def local_marker(props: Props | None, prop: str) -> Marker | NotOurs | None:
    """The marker ``prop`` set on this dataset itself (not inherited), parsed; None if unset."""
    if props is None or props.get(f"{prop} source") != "local":
        return None
    return parse_marker(prop, props.get(prop))


@record(frozen=True)
class TargetState:
    """What ZFS shows around a target, read in a few bulk calls.

    Each tree maps dataset and snapshot names to their property values;
    ``marked_old`` holds the trees whose ``encroot:recv-replaced`` marker
    names this target.
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
    def temp_marker(self) -> Marker | NotOurs | None:
        """The temporary's marker: receiving (from its creation) or verified."""
        return local_marker(self.temp.get(temp_name(self.target)), RECV_VERIFIED)

    @property
    def temp_ours(self) -> bool:
        return isinstance(self.temp_marker, ReceiveInProgress | ReceiveVerified)

    @property
    def temp_verified(self) -> ReceiveVerified | None:
        marker = self.temp_marker
        return marker if isinstance(marker, ReceiveVerified) else None

    @property
    def temp_resumable(self) -> bool:
        """The temporary holds a partial receive that ``zfs send -t`` can resume."""
        return resumable(self.temp.get(temp_name(self.target)))

    def target_markers(self) -> list[tuple[str, Marker]]:
        """encroot's markers set on the target itself: (property, marker)."""
        found = []
        for prop in MARKERS:
            marker = local_marker(self.tree.get(self.target), prop)
            if marker is not None and not isinstance(marker, NotOurs):
                found.append((prop, marker))
        return found

    def old_tops(self) -> list[tuple[DatasetName, ReceiveReplaced]]:
        """The marked old trees' tops, shallowest first."""
        tops = []
        for name, props in self.marked_old.items():
            marker = local_marker(props, RECV_REPLACED)
            if "@" not in name and isinstance(marker, ReceiveReplaced) and \
                    marker.target == self.target:
                tops.append((DatasetName(name), marker))
        return sorted(tops, key=lambda top: top[0].count("/"))

    def needs_recovery(self, *, resuming: bool = False) -> bool:
        """An interrupted replacement left names or markers to clean up first.

        A resumable temporary is not in the way of a stream that resumes it.
        """
        if self.temp and not (resuming and self.temp_resumable):
            return True
        return bool(self.old_tops()) or bool(self.target_markers())

    def refuse_live_owner(self, take_over: str | None = None) -> None:
        """Refuse while an encroot that may still run holds any of this target's state.

        A marker whose owner ran on another host (an ``encroot receive`` there that
        reached this pool over ssh, or ran on the pool's own host) cannot be checked
        for liveness from here: it holds until ``take_over`` names that host
        (``--take-over HOST_ID``), as in ``encroot migrate``.

        Raises:
            OwnerAlive: a live encroot process of this host holds it (names the dataset
                and the process).
            ReceiveRefused: an encroot of another host holds it, and ``take_over`` does
                not name that host (the message names the host id to give).
        """
        held: list[tuple[str, Marker | NotOurs | None]] = (
            [(temp_name(self.target), self.temp_marker)] if self.temp else [])
        held += [(name, marker) for name, marker in self.old_tops()]
        held += [(self.target, own) for _prop, own in self.target_markers()]
        for subject, marker in held:
            refuse_live(subject, marker)
        for subject, marker in held:
            owner = foreign_owner(marker)
            if owner is not None and owner.host != take_over:
                raise ReceiveRefused(
                    f"{subject} is held by {owner.describe()}, whose liveness cannot be "
                    "checked from this host; wait for it, or once it is gone pass "
                    f"--take-over {owner.host} (nothing was changed)")


def _values(table: PropertyTable) -> dict[str, Props]:
    """Property values by dataset; for encroot's markers also ``"<marker> source"``."""
    result: dict[str, Props] = {}
    for name, props in table.datasets.items():
        values = {p: v.value for p, v in props.items()}
        for marker in MARKERS:
            if marker in props:
                values[f"{marker} source"] = props[marker].source
        result[name] = values
    return result


def resumable(props: Props | None) -> bool:
    """The dataset holds a partial ``-s`` receive that ``zfs send -t`` can resume."""
    return props is not None and props.get("receive_resume_token", "-") not in ("-", "")


def get_props(zfs: Zfs, names: Sequence[str], **options: Any) -> dict[str, Props]:
    """A bulk read in table form (no `zfs version` probe needed); {} if a name is missing."""
    try:
        return _values(zfs.get(names, STATE_PROPERTIES, use_json=False, **options))
    except DatasetNotFound:
        return {}


def get_tree(zfs: Zfs, name: str, *more: str) -> dict[str, Props]:
    """The trees under ``name`` (and ``more``) in one recursive ``zfs get``; {} if one
    of them is missing."""
    return get_props(zfs, [name, *more], recursive=True,
                     types=("filesystem", "volume", "snapshot"))


def read_state(zfs: Zfs, target: DatasetName) -> TargetState:
    """Read the target's tree, its parent, encroot's temporaries and the pool feature.

    Two or three processes in the common case: the parent with its direct
    children (target, temporary, old tree) and the target's tree, both at once
    (``Zfs.concurrently``; a target that does not exist reads as an empty tree),
    then the pool feature unless an encrypted dataset among them already shows
    it active.

    Raises:
        InputError: the target's name leaves no room for encroot's temporary suffix.
        ZfsError: a read failed (``PoolNotFound`` for a pool that is not imported).
    """
    parent = target.parent
    family, tree = zfs.concurrently(
        lambda: get_props(zfs, [parent], depth=1, types=("filesystem", "volume"))
        if parent is not None else {},
        lambda: get_tree(zfs, target))
    feature = _encryption_feature(zfs, target, family)
    temp = temp_name(target)
    if parent is not None and target not in family:
        tree = {}  # read before the family: only the family says what stands at the name
    temp_tree = get_tree(zfs, temp) if temp in family else {}
    marked_old: dict[str, Props] = {}
    for candidate in _old_candidates(target, family, tree, temp_tree):
        props = family.get(candidate) or get_props(zfs, [candidate]).get(candidate)
        marker = local_marker(props, RECV_REPLACED)
        if isinstance(marker, ReceiveReplaced) and marker.target == target:
            marked_old.update(get_tree(zfs, candidate))
    return TargetState(target, feature, family.get(target.parent or ""), tree, temp_tree,
                       marked_old)


def _encryption_feature(zfs: Zfs, target: DatasetName, family: dict[str, Props]) -> str:
    """``feature@encryption`` of the target's pool: ``active`` when a dataset just read
    is encrypted (ZFS keeps the feature active while one exists), else ``zpool get``."""
    if any(props.get("encryption", "off") not in ("off", "-") for props in family.values()):
        return "active"
    return zfs.pool_get(target.pool, ["feature@encryption"]).get("feature@encryption", "-")


def _old_candidates(target: DatasetName, family: dict[str, Props], tree: dict[str, Props],
                    temp_tree: dict[str, Props]) -> list[str]:
    """Where an interrupted run may have put the old tree: the sibling name, or the
    ``--keep-old`` name recorded in a verified marker."""
    candidates = [target + RECV_OLD_SUFFIX] if target + RECV_OLD_SUFFIX in family else []
    for props in (temp_tree.get(temp_name(target)), tree.get(target)):
        marker = local_marker(props, RECV_VERIFIED)
        kept = marker.keep_old if isinstance(marker, ReceiveVerified) else None
        if kept and kept not in candidates:
            candidates.append(kept)
    return candidates
