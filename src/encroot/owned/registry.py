"""Every name and property encroot leaves on ZFS, defined once.

Other modules import these names; nothing else spells them.  ``REGISTRY`` is
the same table as plain data (``ownership_table()`` renders it for
docs/design.md).  For each: the operation that owns it, how encroot
recognises it as its own, and what recovery does with it.

``X.encroot-recv`` (dataset; receive)
    Recognised by ``encroot:recv-verified`` set on it locally: role ``receiving``
    from its creation (``zfs receive -o`` sets it before the first byte of the
    stream), role ``verified`` once every GUID and the encryption were checked.
    Recovery: refused while the owner is alive; receiving, it is destroyed (kept
    when resumable and the stream resumes it); verified, it is swapped in for X.
    Without a marker (as encroot 0.x left it before verification) it is not
    encroot's and is left alone.
``X.encroot-old`` or the ``--keep-old`` name (dataset; receive)
    Recognised by ``encroot:recv-replaced`` naming X, set on it locally.
    Recovery: destroyed (or kept) once the verified new X is in place; renamed
    back to X when X is gone and nothing is verified.
``encroot:recv-verified`` / ``encroot:recv-replaced`` (properties; receive)
    Format-2 markers, roles ``receiving`` and ``verified`` / ``replaced``; legacy
    ``GUID [keep-old=NAME]`` and a bare target name.  Cleared at the end.
``POOL/encroot-migrate`` (dataset; migrate)
    The staging of ``encroot migrate``, recognised with an ``encroot:migrate``
    marker on POOL or ``encroot-migrate-*`` snapshots on it.  Recovery: left for
    ``encroot migrate`` (a raw replica: re-parented by hand, the next raw
    incremental breaks it, OpenZFS 12614).
``@encroot-migrate-*`` (snapshots; migrate)
    The prefix.  Reused as the goal of the next initial or catch-up phase.
``encroot:migrate`` (property on DST's root; migrate)
    Role ``phase`` (a phase runs: taken over by the next run once its owner is
    dead) or ``cutover`` (re-parenting began: catch-up refuses, cutover goes on);
    legacy JSON ``{source, snapshot, stage, devices}`` is a cutover.
``X.encroot-convert`` (dataset; convert)
    The new tree of ``encroot encrypt|reencrypt|decrypt X`` while its phases run,
    recognised by ``encroot:convert`` set on it locally (role ``phase`` from its
    creation by ``zfs receive -o``, role ``verified`` once cutover checked it).
    Recovery: owner alive: refused; phase: continued by the next phase, destroyed
    by ``--recover``; verified: swapped in for X.
``X.encroot-convert-old`` or the ``--keep-old`` name (dataset; convert)
    The old tree, recognised by ``encroot:convert-replaced`` naming X (role
    ``replaced`` during the swap, ``kept`` on a tree kept by ``--keep-old``).
``encroot:convert`` / ``encroot:convert-replaced`` (properties; convert)
    Format-2 markers; see the table.
``@encroot-convert-*`` (snapshots; convert)
    The goal snapshots of each phase; they stay, like every snapshot of the tree.
``encroot:rotation`` and ``encroot:NS:PROP`` (properties; rotate)
    The journal (role ``journal``; legacy JSON with ``"version": 1``) and the
    staged values beside it.  Recovery: commit or abort from ZFS's evidence.

A name shaped like one of these without a valid marker is not encroot's: it
is reported, never changed.  A marker whose owner is alive (same host and
boot, the pid running with the same start time) belongs to a running
operation: every recovery path refuses to touch it.
"""

from __future__ import annotations

from typing import Literal

from ..records import record

__all__ = [
    "CONVERT_MARKER",
    "CONVERT_OLD_SUFFIX",
    "CONVERT_REPLACED",
    "CONVERT_SNAPSHOT_PREFIX",
    "CONVERT_SUFFIX",
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
    "Owned",
    "convert_old_name",
    "convert_temp_name",
    "lookalike_target",
    "migrate_staging",
    "ownership_table",
    "recv_old_name",
    "recv_temp_name",
    "staged_property",
]

NAMESPACE = "encroot:"

# receive: X is received as X.encroot-recv, the old X waits as X.encroot-old.
RECV_SUFFIX = ".encroot-recv"
RECV_OLD_SUFFIX = ".encroot-old"
RECV_VERIFIED = "encroot:recv-verified"
RECV_REPLACED = "encroot:recv-replaced"

# migrate: SRC's root is received as DST/encroot-migrate; its snapshots are
# encroot-migrate-<UTC time>; the marker sits on DST's root.
MIGRATE_STAGING = "encroot-migrate"
MIGRATE_SNAPSHOT_PREFIX = "encroot-migrate-"
MIGRATE_MARKER = "encroot:migrate"

# convert: X's new tree is received as X.encroot-convert, the old X waits as
# X.encroot-convert-old during the swap; goal snapshots are encroot-convert-<UTC time>.
CONVERT_SUFFIX = ".encroot-convert"
CONVERT_OLD_SUFFIX = ".encroot-convert-old"
CONVERT_MARKER = "encroot:convert"
CONVERT_REPLACED = "encroot:convert-replaced"
CONVERT_SNAPSHOT_PREFIX = "encroot-convert-"

# rotate: the journal marker, and each staged value of property P as
# "encroot:" + P.  User property names are at most 255 bytes; encroot accepts
# at most 247, which leaves room for the prefix.
ROTATION_MARKER = "encroot:rotation"
ROTATION_STAGE_PREFIX = NAMESPACE

MARKER_PROPERTIES = (RECV_VERIFIED, RECV_REPLACED, MIGRATE_MARKER, ROTATION_MARKER,
                     CONVERT_MARKER, CONVERT_REPLACED)

Kind = Literal["dataset", "snapshot", "property"]


@record(frozen=True)
class Owned:
    """One row of the ownership table."""

    name: str
    kind: Kind
    operation: Literal["receive", "migrate", "rotate", "convert"]
    recognised: str
    recovery: str


REGISTRY: tuple[Owned, ...] = (
    Owned("X" + RECV_SUFFIX, "dataset", "receive",
          f"{RECV_VERIFIED} set on it locally: role receiving (by zfs receive -o, before "
          "the first byte of the stream) or verified",
          "owner alive: refused; receiving: destroyed (kept when resumable and the stream "
          "resumes it); verified: swapped in for X; no marker: not encroot's, left alone"),
    Owned("X" + RECV_OLD_SUFFIX, "dataset", "receive",
          f"{RECV_REPLACED} naming X, set locally",
          "destroyed once the verified new X is in place; renamed back to X when X is gone "
          "and nothing is verified"),
    Owned(RECV_VERIFIED, "property", "receive",
          "format-2 marker, role receiving (from the temporary's creation) or verified; "
          "legacy 'GUID [keep-old=NAME]' (verified)",
          "receiving: the temporary is destroyed; verified: roll forward (swap, destroy or "
          "keep the old tree), then it is cleared"),
    Owned(RECV_REPLACED, "property", "receive",
          "format-2 marker, role replaced; legacy: the target's name",
          "as X.encroot-old (or the --keep-old name)"),
    Owned("POOL/" + MIGRATE_STAGING, "dataset", "migrate",
          f"an {MIGRATE_MARKER} marker on POOL, or {MIGRATE_SNAPSHOT_PREFIX}* snapshots on it",
          "left for encroot migrate: a raw replica, re-parented by hand it breaks the next "
          "raw incremental (OpenZFS 12614)"),
    Owned("@" + MIGRATE_SNAPSHOT_PREFIX + "*", "snapshot", "migrate", "the prefix",
          "reused as the goal of the next initial or catch-up phase"),
    Owned(MIGRATE_MARKER, "property", "migrate",
          "format-2 marker, role phase (a phase runs) or cutover (re-parenting began); "
          "legacy JSON {source, snapshot, stage, devices}",
          "phase: taken over by the next run once its owner is dead; cutover: catch-up "
          "refuses, cutover goes on re-parenting"),
    Owned("X" + CONVERT_SUFFIX, "dataset", "convert",
          f"{CONVERT_MARKER} set on it locally: role phase (by zfs receive -o, from its "
          "creation) or verified",
          "owner alive: refused; phase: continued by the next phase run, destroyed by "
          "--recover; verified: swapped in for X"),
    Owned("X" + CONVERT_OLD_SUFFIX, "dataset", "convert",
          f"{CONVERT_REPLACED} naming X, set locally (role replaced)",
          "destroyed once the verified new X is in place; renamed back to X when X is gone "
          "and nothing is verified"),
    Owned(CONVERT_MARKER, "property", "convert",
          "format-2 marker, role phase (target, operation, phase) or verified (snapshot "
          "GUIDs and encryption checked; keep-old name)",
          "phase: the next phase takes over once its owner is dead; verified: roll forward "
          "(swap, properties, holds, mount, destroy or keep the old tree), then cleared"),
    Owned(CONVERT_REPLACED, "property", "convert",
          "format-2 marker, role replaced (during the swap) or kept (a --keep-old tree)",
          "replaced: as X.encroot-convert-old; kept: left alone, reported by doctor "
          "(old-copy-kept)"),
    Owned("@" + CONVERT_SNAPSHOT_PREFIX + "*", "snapshot", "convert", "the prefix",
          "kept with the tree's other snapshots (the next phase's incrementals start there)"),
    Owned(ROTATION_MARKER, "property", "rotate",
          "format-2 marker, role journal; legacy JSON with version 1",
          "commit or abort from ZFS's evidence (encroot recover)"),
    Owned(ROTATION_STAGE_PREFIX + "NS:PROP", "property", "rotate",
          f"{ROTATION_STAGE_PREFIX} then a user property name, beside a pending "
          f"{ROTATION_MARKER}",
          "copied onto NS:PROP on commit, dropped on abort"),
)


def recv_temp_name(target: str) -> str:
    """Where ``encroot receive`` receives a replacement of ``target``."""
    return target + RECV_SUFFIX


def recv_old_name(target: str) -> str:
    """Where the replaced ``target`` waits between the swap and its destruction."""
    return target + RECV_OLD_SUFFIX


def convert_temp_name(target: str) -> str:
    """Where ``encroot encrypt|reencrypt|decrypt`` receives the new tree of ``target``."""
    return target + CONVERT_SUFFIX


def convert_old_name(target: str) -> str:
    """Where the converted ``target``'s old tree waits between the swap and its destruction."""
    return target + CONVERT_OLD_SUFFIX


def migrate_staging(pool: str) -> str:
    """Where ``encroot migrate`` receives SRC's root below DST ``pool``."""
    return f"{pool}/{MIGRATE_STAGING}"


def staged_property(name: str) -> str:
    """The property that holds the staged value of user property ``name`` during a rotation."""
    return ROTATION_STAGE_PREFIX + name


def lookalike_target(name: str) -> tuple[str, str] | None:
    """``(what it looks like, target)`` for a dataset name shaped like encroot's, else None.

    Pure name matching: only a marker (``parse_marker``) makes it encroot's.
    """
    for suffix, what in ((RECV_SUFFIX, "receive temporary"),
                         (RECV_OLD_SUFFIX, "replaced receive target"),
                         (CONVERT_SUFFIX, "conversion temporary"),
                         (CONVERT_OLD_SUFFIX, "replaced conversion target")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return what, name[: -len(suffix)]
    pool, _, rest = name.partition("/")
    if rest == MIGRATE_STAGING:
        return "migration staging", pool
    return None


def ownership_table() -> str:
    """``REGISTRY`` as the Markdown table of docs/design.md."""
    lines = ["| name / property | kind | owner | recognised by | recovery |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{row.name}` | {row.kind} | {row.operation} | {row.recognised} | "
              f"{row.recovery} |" for row in REGISTRY]
    return "\n".join(lines)
