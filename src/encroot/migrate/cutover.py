"""Executing cutover's steps after the transfers (``run.execute`` dispatches here).

Each function runs the commands its ``Step`` carries, or, for the three steps
that complete theirs from what the run reads then (``steps.Step``), builds
them with ``finish``'s pure builders: the cutover marker with DST's device
folders, the cold start's import under a fresh altroot and its mounts, the
final import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from ..errors import IncorrectKey
from ..zfs import Command
from .files import fail_on
from .finish import (
    cold_start_commands,
    encryption_problems,
    mark_command,
    mount_waves,
    reimport_commands,
    root_properties,
    snapshot_problems,
)
from .model import MigrateRefused, Node, Side
from .steps import Step

if TYPE_CHECKING:
    from .run import _Run

__all__ = ["cold_start", "load_source_key", "mark", "reimport", "run_commands",
           "verify_snapshots"]


def run_commands(run: _Run, commands: Sequence[Command]) -> None:
    """DST's commands, in order (none takes a key)."""
    for command in commands:
        run.dst.execute(command)


def verify_snapshots(run: _Run, goal: str) -> None:
    fail_on(snapshot_problems(run.request, run.state, goal), "before re-parenting")


def load_source_key(run: _Run, step: Step) -> None:
    """Load a received root with SRC's key (none when it was loaded as planned)."""
    for command in step.commands:
        assert run.source_key is not None
        try:
            run.dst.execute(command, key=run.source_key)
        except IncorrectKey as exc:
            raise MigrateRefused(f"the key given for {run.request.source} is not its key: "
                                 f"{step.dataset}, received raw from it, refused it; nothing "
                                 "was re-parented") from exc


def mark(run: _Run, goal: str) -> None:
    """Say on DST's root that re-parenting began (catch-up refuses from now on), and set
    SRC root's local properties there in the same ``zfs set``."""
    props = root_properties(run.request, run.state)
    run_commands(run, (mark_command(run.request, goal, _device_dirs(run), run.owner,
                                    run.dst.commands, properties=props),))
    run.phase_marked = False  # the cutover marker replaced it; unmark removes it
    if props:
        run.result.verified.append(f"SRC root's local properties set on {run.request.destination}")


def _device_dirs(run: _Run) -> list[str]:
    """Folders of DST's devices (for ``zpool import -d``), as read when the phase began
    (``read_state``: the same ``zpool list`` that found DST imported)."""
    return sorted({os.path.dirname(p) for p in run.state.destination_devices})


def cold_start(run: _Run) -> None:
    """Export and import DST under a temporary altroot; load only its key; mount all."""
    import secrets  # here, not at the top: only a cutover pays for these imports
    import tempfile

    dst = run.request.destination
    dirs = _device_dirs(run)
    # on a remote DST the altroot is a name there; zfs mount makes the folders it needs
    remote_altroot = f"/tmp/encroot-migrate-{secrets.token_hex(6)}"  # noqa: S108
    run.altroot = (tempfile.mkdtemp(prefix="encroot-migrate-") if run.dst.remote is None
                   else remote_altroot)
    export, load, *keys = cold_start_commands(
        run.request, run.state, run.dst.commands, run.altroot, dirs,
        key_given=run.destination_key is not None)
    run_commands(run, (export, load))
    _load_keys(run, keys)
    # its checks (keys, then mounts) read DST's datasets alone: see refresh_destination
    state = run.refresh(snapshots=False)
    fail_on(encryption_problems(run.request, state, keys_loaded=True), "after the cold start")
    run.result.verified.append("encryption, encryptionroot and keystatus as planned")
    assert state.destination is not None
    # A wave's mounts are independent of each other, and an interruption leaves some
    # mounted and some not, as one mount at a time would: a cutover run again mounts
    # what is not mounted.
    for wave in mount_waves(_mountable(state.destination)):
        run.dst.concurrently(*(partial(run.dst.execute, run.dst.commands.mount(node.name))
                               for node in wave))
    state = run.refresh(snapshots=False)
    assert state.destination is not None
    unmounted = [n.name for n in _mountable(state.destination)]
    fail_on([f"{name}: not mounted" for name in unmounted], "after the cold start")
    run.result.verified.append(f"cold start: {dst} exported, imported, its key alone loaded, "
                               "every file system mounted")


def _load_keys(run: _Run, keys: Sequence[Command]) -> None:
    """After the import: DST's key (given, or from its keylocation), or (unencrypted DST)
    SRC's key for each moved tree."""
    dst = run.request.destination
    assert run.state.destination is not None and run.state.destination.root_node is not None
    if not run.state.destination.root_node.encrypted:
        for command in keys:
            run.dst.execute(command, key=run.source_key)
        return
    try:
        for command in keys:
            run.dst.execute(command, key=run.destination_key if command.secret_stdin else None)
    except IncorrectKey as exc:
        raise MigrateRefused(f"--new-key-file does not hold {dst}'s key: {dst} is imported "
                             f"without its key; run zfs load-key {dst}, then this cutover "
                             "again") from exc


def _mountable(side: Side) -> list[Node]:
    """File systems not mounted that a boot (or ``zfs mount``) could mount, parents first."""
    return [n for n in side.subtree(side.root)
            if n.type == "filesystem" and n.canmount != "off" and n.mounted != "yes"
            and n.keystatus in ("available", "-") and n.mountpoint.startswith("/")]


def reimport(run: _Run) -> None:
    """Export and import DST normally, without mounting (its mount points are SRC's).

    DST's key is left unloaded: the cold start proved it loads, and deriving
    it again costs seconds for a passphrase; it is loaded when DST is mounted
    (after SRC is exported).
    """
    run_commands(run, reimport_commands(run.request, run.dst.commands, _device_dirs(run)))
    if run.altroot is not None and run.dst.remote is None:
        try:
            os.rmdir(run.altroot)
        except OSError:
            pass
