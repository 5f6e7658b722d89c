"""Findings about encroot's own state, recognised only through ``encroot.owned``.

For each marker set on a dataset that parses (``parse_marker``):

* its owner alive (another process, same host and boot) -> ``operation-in-progress``
  (info; ``--fix`` leaves it alone);
* an interrupted receive -> ``leftover-temporary`` (``encroot receive --recover X``);
* a rotation journal -> ``pending-rotation`` (``encroot recover DS``);
* a migrate cutover or phase -> ``leftover-temporary`` (run the phase again);
* an interrupted encrypt/reencrypt/decrypt -> ``leftover-temporary`` (continue it with
  its next phase, or ``encroot OP --recover X``);
* an old tree kept by ``encroot encrypt|reencrypt|decrypt --keep-old`` -> ``old-copy-kept``
  (warning: its data is readable as it was before the conversion).

A name shaped like encroot's (``*.encroot-recv``, ``*.encroot-old``,
``POOL/encroot-migrate``) without a valid marker, and a marker property whose
value does not parse (foreign, damaged, or written by a newer encroot), are
``lookalike-unowned`` (warning): not encroot's, and never touched by ``--fix``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..owned import (
    CONVERT_MARKER,
    CONVERT_REPLACED,
    MARKER_PROPERTIES,
    MIGRATE_MARKER,
    RECV_REPLACED,
    RECV_SUFFIX,
    RECV_VERIFIED,
    ROTATION_MARKER,
    ConvertKept,
    ConvertPhase,
    ConvertReplaced,
    ConvertVerified,
    Marker,
    MigrateCutover,
    MigratePhase,
    NotOurs,
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    RotationJournal,
    lookalike_target,
    recv_temp_name,
)
from .audit import AuditState, Finding, encroot_command, is_staging, zfs_command

__all__ = ["live_holder", "owned_findings", "receive_target"]


def receive_target(name: str, marker: Marker) -> str | None:
    """The target of the interrupted receive a receive marker on ``name`` belongs to."""
    if isinstance(marker, ReceiveInProgress):
        return marker.target if name == recv_temp_name(marker.target) else None
    if isinstance(marker, ReceiveVerified):
        return name[: -len(RECV_SUFFIX)] if name.endswith(RECV_SUFFIX) else name
    if isinstance(marker, ReceiveReplaced):
        return marker.target
    return None


def live_holder(marker: Marker | NotOurs | None) -> Owner | None:
    """The marker's owner when it is alive in another process."""
    owner = getattr(marker, "owner", None)
    return owner if isinstance(owner, Owner) and owner.holds() else None


def owned_findings(state: AuditState) -> Iterable[Finding]:
    """Every finding about encroot's state and its lookalikes (pure but for liveness)."""
    yield from _receive_findings(state)
    for name in state.props:
        yield from _rotation(state, name)
        yield from _migrate(state, name)
        yield from _convert(state, name)
        yield from _lookalikes(state, name)


def _in_progress(name: str, what: str, owner: Owner) -> Finding:
    return Finding(name, "operation-in-progress", "info",
                   f"{what} is running now: {name} is held by {owner.describe()}; "
                   "nothing will touch it until that process ends", holder=owner.describe())


def _receive_findings(state: AuditState) -> Iterable[Finding]:
    targets: dict[str, list[tuple[str, Marker]]] = {}
    for name in state.props:
        for prop in (RECV_VERIFIED, RECV_REPLACED):
            marker = state.marker(name, prop)
            if marker is None or isinstance(marker, NotOurs):
                continue
            target = receive_target(name, marker)
            if target is not None:
                targets.setdefault(target, []).append((name, marker))
    for target, marked in targets.items():
        holder = next(((n, live_holder(m)) for n, m in marked if live_holder(m)), None)
        first = sorted(n for n, _ in marked)[0]
        if holder is not None and holder[1] is not None:
            yield _in_progress(holder[0], f"encroot receive into {target}", holder[1])
            continue
        yield Finding(first, "leftover-temporary", "warning",
                      f"{first} is left from an interrupted encroot receive into {target}",
                      (encroot_command("receive", "--recover", target),))


def _rotation(state: AuditState, name: str) -> Iterable[Finding]:
    marker = state.marker(name, ROTATION_MARKER)
    if not isinstance(marker, RotationJournal):
        return
    owner = live_holder(marker)
    if owner is not None:
        yield _in_progress(name, f"encroot change-key of {name}", owner)
        return
    yield Finding(name, "pending-rotation", "error",
                  f"an encroot change-key on {name} was interrupted; until it is resolved "
                  "its user properties may describe the wrong key",
                  (encroot_command("recover", name),))


def _migrate(state: AuditState, name: str) -> Iterable[Finding]:
    marker = state.marker(name, MIGRATE_MARKER)
    if not isinstance(marker, MigrateCutover | MigratePhase):
        return
    owner = live_holder(marker)
    if owner is not None:
        yield _in_progress(name, f"encroot migrate from {marker.source}", owner)
        return
    source = marker.source
    if isinstance(marker, MigrateCutover):
        yield Finding(name, "leftover-temporary", "warning",
                      f"{name} is in the middle of an encroot migrate cutover from {source} "
                      "(re-parenting began; no raw incremental may follow)",
                      (encroot_command("migrate", "--phase", "cutover", "--key-file",
                                       f"<{source} key>", source, name),))
    else:
        yield Finding(name, "leftover-temporary", "warning",
                      f"an encroot migrate {marker.phase} phase from {source} into {name} "
                      "was interrupted; run it again to continue from what arrived",
                      (encroot_command("migrate", "--phase", marker.phase, source, name),))


_KEPT_HAZARD = {
    "encrypt": "it holds the data unencrypted",
    "reencrypt": "it holds the data under the old master key, readable with the old key",
    "decrypt": "it holds the data encrypted with the old key",
}


def _convert(state: AuditState, name: str) -> Iterable[Finding]:
    marker = state.marker(name, CONVERT_MARKER)
    replaced = state.marker(name, CONVERT_REPLACED)
    if isinstance(replaced, ConvertKept):
        yield Finding(name, "old-copy-kept", "warning",
                      f"{name} is the old tree of {replaced.target}, kept by encroot "
                      f"{replaced.operation} --keep-old: {_KEPT_HAZARD[replaced.operation]}; "
                      "destroy it once it is no longer needed",
                      (zfs_command("destroy", "-r", name),))
        return
    found = next((m for m in (marker, replaced)
                  if isinstance(m, ConvertPhase | ConvertVerified | ConvertReplaced)), None)
    if found is None:
        return
    owner = live_holder(found)
    if owner is not None:
        yield _in_progress(name, f"encroot {found.operation} of {found.target}", owner)
        return
    if isinstance(found, ConvertPhase):
        message = (f"{name} is the new tree of an interrupted encroot {found.operation} of "
                   f"{found.target} ({found.phase} phase): run the next phase to continue, "
                   "or --recover to drop it")
        fix = encroot_command(found.operation, "--phase", "catch-up", found.target)
    else:
        message = (f"{name} is left from an interrupted swap of encroot {found.operation} "
                   f"into {found.target}")
        fix = encroot_command(found.operation, "--recover", found.target)
    yield Finding(name, "leftover-temporary", "warning", message, (fix,))


def _lookalikes(state: AuditState, name: str) -> Iterable[Finding]:
    for prop in MARKER_PROPERTIES:
        marker = state.marker(name, prop)
        if isinstance(marker, NotOurs):
            yield Finding(name, "lookalike-unowned", "warning",
                          f"{prop} on {name} is not a marker this encroot can read "
                          f"({marker.reason}); encroot leaves it and {name} alone")
    shape = lookalike_target(name)
    if shape is None:
        return
    what, target = shape
    if what == "migration staging":
        owned = is_staging(state, name)
    elif what == "conversion temporary":
        owned = isinstance(state.marker(name, CONVERT_MARKER), ConvertPhase | ConvertVerified)
    elif what == "replaced conversion target":
        owned = isinstance(state.marker(name, CONVERT_REPLACED), ConvertReplaced | ConvertKept)
    elif what == "receive temporary":
        marker = state.marker(name, RECV_VERIFIED)
        owned = isinstance(marker, ReceiveInProgress | ReceiveVerified) and \
            receive_target(name, marker) == target
    else:
        marker = state.marker(name, RECV_REPLACED)
        owned = isinstance(marker, ReceiveReplaced) and marker.target == target
    if not owned:
        yield Finding(name, "lookalike-unowned", "warning",
                      f"{name} is named like an encroot {what} of {target} but carries no "
                      "encroot marker: it is not encroot's, and encroot (doctor --fix too) "
                      "will not touch it")
