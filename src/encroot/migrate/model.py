"""What a migration reads and asks for: requests and the state of both pools (pure data).

``MigrateRequest`` validates the user's input when it is made.  ``Side`` is
one pool's (or root's) datasets with their snapshots, as ``read_state``
found them; ``MigrateState`` is both sides plus the few pool facts the plan
needs.  Nothing here starts a process.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InputError, MigrateRefused
from ..names import DatasetName, PoolName, SnapshotName
from ..owned import MIGRATE_MARKER, MIGRATE_STAGING, MigrateCutover, MigratePhase, parse_marker
from ..records import field, record

__all__ = [
    "PHASES",
    "MigrateRefused",
    "MigrateRequest",
    "MigrateState",
    "Node",
    "Side",
    "Snap",
]

PHASES = ("initial", "catch-up", "cutover")


@record(frozen=True)
class MigrateRequest:
    """``encroot migrate`` options, validated.

    Attributes:
        source: SRC's encrypted root (a pool's root dataset, or any encryption root).
        destination: the pool that receives it; its root takes SRC root's place.
        phase: ``initial``, ``catch-up``, ``cutover`` or ``all``.
        snapshot: the snapshot name to send up to (created recursively if missing).
        root_data: what to do with files stored directly in SRC's root:
            ``copy``, ``skip`` or ``dataset:NAME``.
        verify_mount: after the cold start, compare every file's SHA-256.
        allow_unencrypted_destination: DST's root is unencrypted on purpose; the
            migrated trees then stay encryption roots with SRC's key.
        source_host, destination_host: the host each side is on, as the user
            named it (``[USER@]HOST``), or None for this host.  The same pool
            name on two hosts is two pools.
    """

    source: DatasetName
    destination: PoolName
    phase: str = "all"
    snapshot: str | None = None
    root_data: str | None = None
    verify_mount: bool = False
    allow_unencrypted_destination: bool = False
    source_host: str | None = None
    destination_host: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", DatasetName(self.source))
        object.__setattr__(self, "destination", PoolName(self.destination))
        if self.phase not in (*PHASES, "all"):
            raise InputError(f"--phase {self.phase!r}: use one of {', '.join(PHASES)} "
                             "(or leave it out for all three)", subject="--phase")
        if self.source.pool == self.destination and self.source_host == self.destination_host:
            raise InputError(f"DST_POOL {self.destination!r}: must be another pool than "
                             f"SRC's ({self.source.pool!r})", subject="DST_POOL")
        if self.snapshot is not None:
            SnapshotName(f"{self.source}@{self.snapshot}")
        if self.root_data is not None:
            self._check_root_data(self.root_data)
        remote = self.source_host or self.destination_host
        if remote and (self.verify_mount or self.root_data == "copy"):
            option = "--verify=mount" if self.verify_mount else "--root-data=copy"
            raise InputError(f"{option}: reads the files of both pools, so it needs both on "
                             f"this host ({remote} is remote); leave it out, or run encroot "
                             "on the host that has both", subject=option)

    @property
    def on_destination(self) -> str:
        """`` on host H`` for a remote DST, else nothing (for messages)."""
        return f" on host {self.destination_host}" if self.destination_host else ""

    @staticmethod
    def _check_root_data(mode: str) -> None:
        if mode in ("copy", "skip"):
            return
        kind, _, name = mode.partition(":")
        if kind != "dataset" or not name or "/" in name:
            raise InputError(f"--root-data {mode!r}: use copy, skip or dataset:NAME (NAME one "
                             "dataset name component)", subject="--root-data")
        DatasetName(f"x/{name}")
        if name == MIGRATE_STAGING:
            raise InputError(f"--root-data {mode!r}: {MIGRATE_STAGING} is where encroot "
                             "receives SRC before cutover; choose another NAME",
                             subject="--root-data")

    @property
    def phases(self) -> tuple[str, ...]:
        """The phases this request runs, in order.

        ``all`` runs initial and cutover: a catch-up right after the initial
        copy would have nothing new to send, and cutover ends with the same
        incremental a catch-up would send.
        """
        return ("initial", "cutover") if self.phase == "all" else (self.phase,)

    @property
    def root_dataset(self) -> str | None:
        """The name (below DST) that receives SRC root's own data, with ``dataset:NAME``."""
        if self.root_data and self.root_data.startswith("dataset:"):
            return self.root_data.split(":", 1)[1]
        return None

    def destination_name(self, source_name: str) -> str:
        """Where a SRC dataset lands on DST: the same path below DST's root."""
        if source_name == self.source:
            name = self.root_dataset
            return f"{self.destination}/{name}" if name else str(self.destination)
        if not source_name.startswith(self.source + "/"):
            raise InputError(f"{source_name} is not below {self.source}")
        return f"{self.destination}{source_name[len(self.source):]}"

    @property
    def staging(self) -> str:
        """Where SRC's root is received (with everything below it) until cutover."""
        return f"{self.destination}/{MIGRATE_STAGING}"

    def staged_name(self, source_name: str) -> str:
        """Where a SRC dataset is received before cutover: the same path below the staging."""
        if source_name != self.source and not source_name.startswith(self.source + "/"):
            raise InputError(f"{source_name} is not below {self.source}")
        return f"{self.staging}{source_name[len(self.source):]}"

    def source_name(self, destination_name: str) -> str:
        """The SRC dataset a DST name (final or staged) came from."""
        if destination_name == self.staging or destination_name.startswith(self.staging + "/"):
            return f"{self.source}{destination_name[len(self.staging):]}"
        if self.root_dataset and destination_name == self.destination_name(self.source):
            return str(self.source)
        return f"{self.source}{destination_name[len(self.destination):]}"


@record(frozen=True)
class Snap:
    """A snapshot: its short name (after '@'), GUID and creation txg."""

    name: str
    guid: str
    txg: int


@record(frozen=True)
class Node:
    """A filesystem or volume and its snapshots (oldest first)."""

    name: str
    type: str = "filesystem"
    guid: str = ""
    encryption: str = "off"
    encryptionroot: str = "-"
    keystatus: str = "-"
    keyformat: str = "none"
    keylocation: str = "none"
    origin: str = "-"
    canmount: str = "on"
    mountpoint: str = "-"
    mounted: str = "-"
    createtxg: int = 0
    resume_token: str = "-"  # noqa: S105 (a receive_resume_token, no secret)
    snapshots: tuple[Snap, ...] = ()

    @property
    def encrypted(self) -> bool:
        return self.encryption not in ("off", "-", "")

    @property
    def is_encryption_root(self) -> bool:
        return self.encrypted and self.encryptionroot == self.name

    @property
    def resumable(self) -> bool:
        return self.resume_token not in ("-", "")

    def snapshot(self, short: str) -> Snap | None:
        for snap in self.snapshots:
            if snap.name == short:
                return snap
        return None

    def newest_common(self, other: Node) -> Snap | None:
        """Our newest snapshot that ``other`` holds with the same GUID."""
        theirs = {snap.guid for snap in other.snapshots}
        for snap in reversed(self.snapshots):
            if snap.guid in theirs:
                return snap
        return None


@record(frozen=True)
class Side:
    """The datasets below (and including) ``root`` on one side, by full name."""

    root: str
    nodes: Mapping[str, Node] = field(default_factory=dict)
    # Every property read for the root itself (available, the marker...).
    root_values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Node | None:
        return self.nodes.get(name)

    def children(self, name: str) -> list[Node]:
        """Direct children, oldest first (an origin is always older than its clones)."""
        found = [node for node in self.nodes.values()
                 if node.name.rsplit("/", 1)[0] == name and "/" in node.name]
        return sorted(found, key=lambda node: (node.createtxg, node.name))

    def subtree(self, name: str) -> list[Node]:
        """``name`` and every descendant, parents first."""
        return sorted((node for node in self.nodes.values()
                       if node.name == name or node.name.startswith(name + "/")),
                      key=lambda node: (node.name.count("/"), node.createtxg, node.name))

    @property
    def root_node(self) -> Node | None:
        return self.nodes.get(self.root)


@record(frozen=True)
class MigrateState:
    """Everything a migration plan is made from, read in a few bulk calls.

    Attributes:
        source, destination: both sides; ``destination`` is None when DST is
            not an imported pool.
        destination_pool: DST's pool properties (``feature@encryption``...).
        destination_available: bytes DST's root can still take.
        source_root_local: SRC root's locally set properties (read for cutover only:
            its steps alone use them).
        root_files: entries found in SRC root's own file system, or None when
            it is not mounted (so encroot cannot tell).
        marker: DST root's ``encroot:migrate`` marker when it says that a cutover
            of some source began re-parenting (role ``cutover``), else None.
        phase_marker: the same property when it says that a phase runs.
        destination_devices: paths of DST's leaf devices or files, read with its pool
            properties when the phase began (their folders go to ``zpool import -d``).
    """

    source: Side
    destination: Side | None
    destination_pool: Mapping[str, str] = field(default_factory=dict)
    destination_available: int = 0
    source_root_local: Mapping[str, str] = field(default_factory=dict)
    root_files: tuple[str, ...] | None = ()
    marker: MigrateCutover | None = None
    phase_marker: MigratePhase | None = None
    destination_devices: tuple[str, ...] = ()

    @staticmethod
    def markers(value: str | None) -> tuple[MigrateCutover | None, MigratePhase | None]:
        """DST root's ``encroot:migrate`` value as (cutover, phase) markers; a value
        encroot did not write is neither."""
        parsed = parse_marker(MIGRATE_MARKER, value)
        return (parsed if isinstance(parsed, MigrateCutover) else None,
                parsed if isinstance(parsed, MigratePhase) else None)
