"""encroot's state on ZFS: the names it owns, the markers it writes, who holds them.

``registry`` defines every name and property (and the ownership table),
``markers`` the one versioned marker format and its parser, ``owner`` the
process identity and liveness that decide whether recovery may touch a
piece of state.  Every operation (receive, migrate, rotate, convert) and doctor go
through this package; nothing else spells these names.
"""

from ..errors import OwnerAlive
from . import owner as _owner_module
from .claim import claim_marker
from .markers import (
    CONVERSIONS,
    FORMAT,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    Marker,
    MigrateCutover,
    MigratePhase,
    NotOurs,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    RotationJournal,
    dumps,
    marker_types_table,
    parse_marker,
)
from .owner import Owner, processes_with_argument
from .registry import (
    CONVERT_MARKER,
    CONVERT_OLD_SUFFIX,
    CONVERT_REPLACED,
    CONVERT_SNAPSHOT_PREFIX,
    CONVERT_SUFFIX,
    MARKER_PROPERTIES,
    MIGRATE_MARKER,
    MIGRATE_SNAPSHOT_PREFIX,
    MIGRATE_STAGING,
    NAMESPACE,
    RECV_OLD_SUFFIX,
    RECV_REPLACED,
    RECV_SUFFIX,
    RECV_VERIFIED,
    REGISTRY,
    ROTATION_MARKER,
    ROTATION_STAGE_PREFIX,
    Owned,
    convert_old_name,
    convert_temp_name,
    lookalike_target,
    migrate_staging,
    ownership_table,
    recv_old_name,
    recv_temp_name,
    staged_property,
)

__all__ = [
    "CONVERSIONS",
    "CONVERT_MARKER",
    "CONVERT_OLD_SUFFIX",
    "CONVERT_REPLACED",
    "CONVERT_SNAPSHOT_PREFIX",
    "CONVERT_SUFFIX",
    "FORMAT",
    "MARKER_PROPERTIES",
    "MIGRATE_MARKER",
    "MIGRATE_SNAPSHOT_PREFIX",
    "MIGRATE_STAGING",
    "NAMESPACE",
    "RECV_OLD_SUFFIX",
    "RECV_REPLACED",
    "RECV_SUFFIX",
    "RECV_VERIFIED",
    "REGISTRY",
    "ROTATION_MARKER",
    "ROTATION_STAGE_PREFIX",
    "ConvertKept",
    "ConvertPhase",
    "ConvertReplaced",
    "ConvertVerified",
    "Marker",
    "MigrateCutover",
    "MigratePhase",
    "NotOurs",
    "Owned",
    "Owner",
    "ReceiveInProgress",
    "ReceiveReplaced",
    "ReceiveVerified",
    "RotationJournal",
    "claim_marker",
    "convert_old_name",
    "convert_temp_name",
    "dumps",
    "foreign_owner",
    "live_owner",
    "lookalike_target",
    "marker_types_table",
    "migrate_staging",
    "ownership_table",
    "parse_marker",
    "processes_with_argument",
    "recv_old_name",
    "recv_temp_name",
    "refuse_live",
    "staged_property",
]


def live_owner(*markers: Marker | NotOurs | None) -> Owner | None:
    """The first owner among ``markers`` that is alive in another process, if any."""
    for marker in markers:
        owner = getattr(marker, "owner", None)
        if isinstance(owner, Owner) and owner.holds():
            return owner
    return None


def foreign_owner(*markers: Marker | NotOurs | None) -> Owner | None:
    """The first owner among ``markers`` that ran on another host, if any.

    Its liveness cannot be checked from here (its ``/proc`` is elsewhere): with
    remote pools a marker may name the host that ran the operation over ssh,
    so such an owner counts as alive until the user says otherwise
    (``encroot migrate --take-over HOST``).
    """
    here = _owner_module.host_id()
    for marker in markers:
        owner = getattr(marker, "owner", None)
        if isinstance(owner, Owner) and owner.host != here:
            return owner
    return None


def refuse_live(subject: str, *markers: Marker | NotOurs | None) -> None:
    """Raise ``OwnerAlive`` when a marker's owner is alive in another process.

    Raises:
        OwnerAlive: names ``subject`` and the process that holds it.
    """
    owner = live_owner(*markers)
    if owner is not None:
        raise OwnerAlive(subject=subject, pid=owner.pid, holder=owner.describe())
