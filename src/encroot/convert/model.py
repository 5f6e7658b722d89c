"""What a conversion reads and asks for (pure data): the request and the trees' state.

``ConvertRequest`` validates the user's input when it is made (a one-line
``InputError`` naming the option and the rule).  ``Tree`` is one dataset
tree as one bulk read found it: every filesystem and volume with its
snapshots (oldest first), bookmarks, local properties and markers.
``ConvertState`` is the old tree, the new one (``X.encroot-convert``), the
old tree moved aside during a swap, and the few facts of the parent and
pool the plan needs.  Nothing here starts a process.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConvertRefused, InputError
from ..names import DatasetName
from ..owned import (
    CONVERSIONS,
    CONVERT_MARKER,
    CONVERT_REPLACED,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    Marker,
    NotOurs,
    convert_old_name,
    convert_temp_name,
    parse_marker,
)
from ..records import field, record

__all__ = [
    "CONVERSIONS",
    "PHASES",
    "ConvertRefused",
    "ConvertRequest",
    "ConvertState",
    "Node",
    "Snap",
    "Tree",
]

PHASES = ("initial", "catch-up", "cutover")
KEY_FORMATS = ("hex", "raw", "passphrase")
MIN_PBKDF2_ITERS = 100_000  # ZFS refuses fewer (MIN_PBKDF2_ITERATIONS)


@record(frozen=True)
class ConvertRequest:
    """``encroot encrypt|reencrypt|decrypt`` options, validated.

    Attributes:
        operation: ``encrypt``, ``reencrypt`` or ``decrypt``.
        dataset: the top of the tree converted in place.
        phase: ``initial``, ``catch-up``, ``cutover`` or ``all`` (initial, then cutover).
        keyformat, keylocation, pbkdf2iters: the new encryption root's (``-o``); the
            key itself is passed to the executor, never kept here.
        inherit: the new tree inherits the encrypted parent's key instead of
            becoming its own encryption root.
        keep_old: keep the old tree under this name instead of destroying it.
        verify_mount: also compare every file's SHA-256 (``--verify=mount``).
        allow_plaintext: ``decrypt``'s explicit consent.
    """

    operation: str
    dataset: DatasetName
    phase: str = "all"
    keyformat: str | None = None
    keylocation: str | None = None
    pbkdf2iters: int | None = None
    inherit: bool = False
    keep_old: DatasetName | None = None
    verify_mount: bool = False
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", DatasetName(self.dataset))
        if self.operation not in CONVERSIONS:
            raise InputError(f"operation {self.operation!r}: use one of "
                             f"{', '.join(CONVERSIONS)}", subject="operation")
        if self.phase not in (*PHASES, "all"):
            raise InputError(f"--phase {self.phase!r}: use one of {', '.join(PHASES)} "
                             "(or leave it out for all of them)", subject="--phase")
        if self.dataset.is_pool_root:
            raise InputError(f"{self.dataset!r} is a pool's root dataset, which cannot be "
                             f"renamed or destroyed from user space: convert its children "
                             f"one by one ({self.operation} {self.dataset}/CHILD), or move the "
                             "data to a pool created with -O encryption=on (encroot migrate)",
                             subject=str(self.dataset))
        self._check_key_options()
        if self.keep_old is not None:
            keep = DatasetName(self.keep_old)
            object.__setattr__(self, "keep_old", keep)
            if keep == self.dataset or keep.is_descendant_of(self.dataset) or \
                    self.dataset.is_descendant_of(keep):
                raise InputError(f"--keep-old {keep!r}: must be outside {self.dataset!r} "
                                 "(and not above it)", subject="--keep-old")
            if keep.pool != self.dataset.pool:
                raise InputError(f"--keep-old {keep!r}: must be in pool "
                                 f"{self.dataset.pool!r} (it is renamed there)",
                                 subject="--keep-old")
        for name in (self.temp, self.old_aside):  # room for encroot's suffixes
            DatasetName(name)

    def _check_key_options(self) -> None:
        given = [f"-o {name}" for name, value in (("keyformat", self.keyformat),
                                                  ("keylocation", self.keylocation),
                                                  ("pbkdf2iters", self.pbkdf2iters))
                 if value is not None]
        if self.operation == "decrypt":
            if given or self.inherit:
                raise InputError(f"decrypt: {', '.join(given) or '--inherit'} makes no sense "
                                 "for a tree that will not be encrypted",
                                 subject=(given or ["--inherit"])[0])
            if not self.allow_plaintext:
                raise InputError(f"decrypt {self.dataset}: pass --allow-plaintext to store "
                                 "the tree's data unencrypted", subject="--allow-plaintext")
            return
        if self.allow_plaintext:
            raise InputError(f"--allow-plaintext: only for decrypt, not {self.operation}",
                             subject="--allow-plaintext")
        if self.inherit and given:
            raise InputError(f"--inherit: the new tree inherits its parent's key; "
                             f"{given[0]} cannot be set with it", subject="--inherit")
        if self.keyformat is not None and self.keyformat not in KEY_FORMATS:
            raise InputError(f"-o keyformat={self.keyformat}: use hex, raw or passphrase",
                             subject="keyformat")
        location = self.keylocation
        if location is not None and location != "prompt" and not (
                location.startswith("file:///") or location.startswith("https://")):
            raise InputError(f"-o keylocation={location}: use prompt, file:///ABSOLUTE/PATH "
                             "or https://URL", subject="keylocation")
        if self.pbkdf2iters is not None:
            if self.keyformat not in (None, "passphrase"):
                raise InputError(f"-o pbkdf2iters: only for keyformat=passphrase, not "
                                 f"{self.keyformat}", subject="pbkdf2iters")
            if self.pbkdf2iters < MIN_PBKDF2_ITERS:
                raise InputError(f"-o pbkdf2iters={self.pbkdf2iters}: at least "
                                 f"{MIN_PBKDF2_ITERS}", subject="pbkdf2iters")

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this request runs: ``all`` is initial, then cutover (a catch-up
        right after the initial copy would send nothing cutover does not)."""
        return ("initial", "cutover") if self.phase == "all" else (self.phase,)

    @property
    def temp(self) -> str:
        """Where the new tree is received: ``X.encroot-convert``."""
        return convert_temp_name(self.dataset)

    @property
    def old_aside(self) -> str:
        """Where the old tree goes at the swap: ``--keep-old NAME`` or ``X.encroot-convert-old``."""
        return str(self.keep_old) if self.keep_old else convert_old_name(self.dataset)

    @property
    def encrypted_result(self) -> bool:
        return self.operation != "decrypt"

    @property
    def own_root(self) -> bool:
        """The new top becomes its own encryption root (with the key given)."""
        return self.encrypted_result and not self.inherit

    def new_name(self, old_name: str) -> str:
        """The name in the new tree of a dataset (or snapshot) of the old one."""
        return self.temp + old_name[len(self.dataset):]

    def old_name(self, new_name: str) -> str:
        return self.dataset + new_name[len(self.temp):]


@record(frozen=True)
class Snap:
    """A snapshot: its short name (after '@'), GUID, creation txg, user holds and clones."""

    name: str
    guid: str
    txg: int
    userrefs: int = 0
    clones: tuple[str, ...] = ()


@record(frozen=True)
class Node:
    """A filesystem or volume, its snapshots (oldest first) and its local properties.

    ``local`` holds the properties set locally or received (what ``zfs send -p``
    or ``-R`` would carry); ``values`` every property of the bulk read.
    """

    name: str
    values: Mapping[str, str] = field(default_factory=dict)
    local: Mapping[str, str] = field(default_factory=dict)
    snapshots: tuple[Snap, ...] = ()
    bookmarks: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def get(self, prop: str, default: str = "-") -> str:
        return self.values.get(prop, default)

    @property
    def type(self) -> str:
        return self.get("type")

    @property
    def is_volume(self) -> bool:
        return self.type == "volume"

    @property
    def encrypted(self) -> bool:
        return self.get("encryption", "off") not in ("off", "-", "")

    @property
    def origin(self) -> str | None:
        origin = self.get("origin")
        return None if origin in ("-", "") else origin

    @property
    def resume_token(self) -> str | None:
        token = self.get("receive_resume_token")
        return None if token in ("-", "") else token

    def snapshot(self, short: str) -> Snap | None:
        return next((snap for snap in self.snapshots if snap.name == short), None)

    def newest_common(self, other: Node) -> Snap | None:
        """Our newest snapshot that ``other`` holds with the same GUID."""
        theirs = {snap.guid for snap in other.snapshots}
        return next((snap for snap in reversed(self.snapshots) if snap.guid in theirs), None)

    def marker(self, prop: str) -> Marker | NotOurs | None:
        """encroot's marker ``prop`` set on this dataset itself; None when unset or inherited."""
        if self.sources.get(prop) != "local":
            return None
        return parse_marker(prop, self.values.get(prop))


@record(frozen=True)
class Tree:
    """The filesystems and volumes of one tree, by name; empty when it does not exist."""

    root: str
    nodes: Mapping[str, Node] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.root in self.nodes

    @property
    def top(self) -> Node | None:
        return self.nodes.get(self.root)

    def get(self, name: str) -> Node | None:
        return self.nodes.get(name)

    def ordered(self) -> list[Node]:
        """Parents first, then by creation (an origin is older than its clones)."""
        return sorted(self.nodes.values(),
                      key=lambda node: (node.name.count("/"), _int(node.get("createtxg")),
                                        node.name))


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


@record(frozen=True)
class ConvertState:
    """Everything a conversion plan is made from, read in a few bulk calls.

    Attributes:
        old: the tree at X (absent once a swap moved it aside).
        new: ``X.encroot-convert``.
        aside: the old tree moved aside by an interrupted swap (its top carries
            ``encroot:convert-replaced`` naming X), else empty.
        parent: X's parent's properties (encryption, encryptionroot, keystatus,
            available); empty for a pool root.
        feature: the pool's ``feature@encryption``.
        holds: snapshot -> user hold tags, for the snapshots of both trees that have some.
        mounts: mount point -> processes using it (pid and command), filled only at
            cutover when the old tree is in use.
        details: the snapshots and bookmarks, the local properties of X and of the
            tree aside, and the holds were read; ``read_state(details=False)`` leaves
            them out, since only the swap's last move (``swap.next_action``) needs them.
    """

    old: Tree
    new: Tree
    aside: Tree = field(default_factory=lambda: Tree(""))
    parent: Mapping[str, str] = field(default_factory=dict)
    feature: str = "-"
    holds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keep_old_exists: bool = False
    details: bool = True

    @property
    def available(self) -> int:
        return _int(self.parent.get("available", ""))

    @property
    def new_marker(self) -> Marker | NotOurs | None:
        """``encroot:convert`` on the new tree's top: phase or verified (or foreign)."""
        top = self.new.top
        return None if top is None else top.marker(CONVERT_MARKER)

    @property
    def new_ours(self) -> bool:
        return isinstance(self.new_marker, ConvertPhase | ConvertVerified)

    @property
    def verified(self) -> ConvertVerified | None:
        """The verified marker on the new tree, or on X once the swap put it there."""
        for top in (self.new.top, self.old.top):
            marker = None if top is None else top.marker(CONVERT_MARKER)
            if isinstance(marker, ConvertVerified):
                return marker
        return None

    @property
    def aside_marker(self) -> ConvertReplaced | ConvertKept | None:
        top = self.aside.top
        marker = None if top is None else top.marker(CONVERT_REPLACED)
        return marker if isinstance(marker, ConvertReplaced | ConvertKept) else None

    @property
    def swapped(self) -> bool:
        """X is the new tree (its top carries the verified marker)."""
        top = self.old.top
        return top is not None and isinstance(top.marker(CONVERT_MARKER), ConvertVerified)
