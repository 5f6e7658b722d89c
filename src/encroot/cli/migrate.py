"""The ``migrate`` subcommand (see ``encroot.cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..hosts import Location, parse_location
from ..keys import Key
from ..migrate import (
    PHASES,
    MigrateRequest,
    PhasePlan,
    migrate,
    plan_migration,
)
from ..migrate.steps import human_bytes
from ..names import DatasetName, PoolName
from ..zfs import Zfs
from ..zfs.masters import SshMasters
from .common import Exit, emit, quiet, say_to_stderr
from .keyfiles import closing_all, read_key
from .progress import TransferProgress
from .remote import LOCATION_HELP, add_ssh_options, zfs_for

__all__ = ["add_migrate_commands", "plan_lines"]

def add_migrate_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add migrate to the ``encroot`` parser."""
    parser = commands.add_parser(
        "migrate", help="move an encrypted root with its children and snapshots to a new pool",
        description="Move SRC (an encrypted pool root, or any encryption root) with its "
                    "inheriting children and all snapshots into the existing pool DST_POOL, "
                    "raw (never decrypted). Phases: initial (bulk copy while SRC is in use, "
                    "into DST_POOL/encroot-migrate), catch-up (raw incrementals; repeatable), "
                    "cutover (final snapshot, last incremental, re-parenting to DST's key, "
                    "each child tree moved to its name, verification, cold start). "
                    "Without --phase all run (initial, then cutover). An interrupted phase is "
                    "run again and continues from what ZFS shows. Either side may be on "
                    "another host: push (encroot migrate tank backup@newhost:newtank) or pull "
                    "(encroot migrate oldhost:tank newtank); the stream goes zfs send | ssh "
                    "HOST zfs receive, keys only on ssh's stdin. " + LOCATION_HELP + " Exit "
                    "status 0 on success (with -n: when nothing is refused), 1 when refused "
                    "or failed, 2 for bad input, 4 when a remote host cannot be used.")
    parser.add_argument("-n", dest="dry_run", action="store_true",
                        help="print the plan (datasets, snapshots, estimated bytes, commands, "
                             "checks) and change nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phase", choices=PHASES, help="run one phase only")
    parser.add_argument("--snapshot", metavar="NAME",
                        help="send up to SRC@NAME (taken recursively if missing)")
    parser.add_argument("--root-data", metavar="MODE",
                        help="files stored in SRC's root itself: dataset:NAME (kept raw as "
                             "DST/NAME), copy (copied into DST's root, re-encrypted with DST's "
                             "key) or skip (left behind)")
    parser.add_argument("--verify", choices=("guids", "mount"), default="guids",
                        help="mount: also compare every file's SHA-256 after the cold start")
    parser.add_argument("--allow-unencrypted-destination", action="store_true",
                        help="DST's root is unencrypted on purpose: the moved trees keep "
                             "SRC's key as their own encryption roots")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key-file", metavar="FILE", help="SRC root's key (for cutover)")
    keys.add_argument("--key-stdin", action="store_true", help="read SRC root's key from stdin")
    parser.add_argument("--new-key-file", metavar="FILE",
                        help="DST root's key, to load it again after the cold start (needed "
                             "when its keylocation is prompt)")
    parser.add_argument("-v", dest="verbose", action="store_true",
                        help="print every zfs command (keys shown as <secret>)")
    add_ssh_options(parser)
    parser.add_argument("--take-over", metavar="HOST_ID",
                        help="DST's marker names an encroot on another host, whose liveness "
                             "cannot be checked from here: go on, that run is gone (the "
                             "refusal names the host id to give)")
    parser.add_argument("source", metavar="[[USER@]HOST:]SRC_POOL_OR_ROOT")
    parser.add_argument("destination", metavar="[[USER@]HOST:]DST_POOL")
    parser.set_defaults(handler=_migrate)


def _request(args: argparse.Namespace, source: Location,
             destination: Location) -> MigrateRequest:
    return MigrateRequest(DatasetName(source.dataset), PoolName(destination.dataset),
                          phase=args.phase or "all",
                          snapshot=args.snapshot, root_data=args.root_data,
                          verify_mount=args.verify == "mount",
                          allow_unencrypted_destination=args.allow_unencrypted_destination,
                          source_host=source.host_label if source.remote else None,
                          destination_host=destination.host_label if destination.remote
                          else None)


def _source_key(args: argparse.Namespace, request: MigrateRequest, keyformat: str) -> Key:
    """SRC root's key, read the way its ``keyformat`` (read with SRC's tree) says."""
    known = keyformat if keyformat in ("hex", "raw", "passphrase") else None
    if args.key_file:
        return read_key(args.key_file, known, "--key-file")  # type: ignore[arg-type]
    if args.key_stdin:
        return Key.from_stdin(known)  # type: ignore[arg-type]
    return Key.prompt(known or "passphrase", label=f"{request.source} (SRC root)")  # type: ignore[arg-type]


def _migrate(args: argparse.Namespace) -> int:
    source, destination = parse_location(args.source), parse_location(args.destination)
    request = _request(args, source, destination)
    with SshMasters(tuple(args.ssh_options)) as masters:
        log = say_to_stderr if args.verbose else None
        zfs = zfs_for(source, masters, log=log)
        dst = zfs if (source.host, source.user) == (destination.host, destination.user) \
            else zfs_for(destination, masters, log=log)
        return _run(args, request, zfs, dst)


def _run(args: argparse.Namespace, request: MigrateRequest, zfs: Zfs, dst: Zfs) -> int:
    if args.dry_run:
        plans = plan_migration(zfs, request, dst)
        hosts = {"source_host": request.source_host,
                 "destination_host": request.destination_host}
        emit(args.json, {"dry_run": True, "phases": [p.to_json() for p in plans], **hosts},
             [line for plan in plans for line in plan_lines(plan, request)])
        return Exit.FAILED if any(plan.refusals for plan in plans) else Exit.OK
    new_key = read_key(args.new_key_file, None, "--new-key-file") if args.new_key_file \
        else None
    keys: list[Key | None] = [new_key]

    def source_key(keyformat: str) -> Key:  # read once SRC's tree is read
        key = _source_key(args, request, keyformat)
        keys.append(key)
        return key

    progress = TransferProgress(sys.stderr)
    with closing_all(keys):
        result = migrate(zfs, request,
                         source_key=source_key if "cutover" in request.phases else None,
                         destination_key=new_key, progress=progress,
                         say=say_to_stderr if args.verbose else quiet,
                         destination_zfs=dst, take_over=args.take_over)
    lines = []
    for phase in result.phases:
        snapshot = phase.plan.goal.name if phase.plan.goal else "-"
        lines.append(f"{phase.plan.phase}: done up to @{snapshot}; "
                     f"{len(phase.transfers_run)} transfers, {phase.transferred_bytes} bytes")
        lines += [f"  ok  {line}" for line in phase.verified]
    if "cutover" in request.phases:
        lines.append(f"{request.destination}{request.on_destination} is imported, its key "
                     "not loaded and nothing "
                     "mounted: its file systems have SRC's mount points; once SRC is exported, "
                     f"run zfs load-key {request.destination} && zfs mount -a")
    emit(args.json, result.to_json(), lines)
    return Exit.OK


def plan_lines(plan: PhasePlan, request: MigrateRequest | None = None) -> list[str]:
    """A phase plan as text for ``-n``; with a remote side, where each command runs."""
    lines = [f"phase {plan.phase}:"]
    if request is not None and (request.source_host or request.destination_host):
        lines.append(f"  hosts: SRC {request.source} on {request.source_host or 'this host'}"
                     f", DST {request.destination} on {request.destination_host or 'this host'}"
                     " (zfs send on SRC's host | ssh | zfs receive on DST's; cutover's steps "
                     "run on DST's host)")
    if plan.goal is not None:
        verb = "take" if plan.goal.create else "use"
        lines.append(f"  snapshot: {verb} @{plan.goal.name}")
    for refusal in plan.refusals:
        lines.append(f"  REFUSED: {refusal.text()}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    if plan.datasets:
        lines.append("  datasets (snapshots up to the goal; encryption root at the end):")
        lines += [f"    {row['source']} -> {row['target']} ({row['type']}, "
                  f"{row['snapshots']} snapshots; root {row['encryptionroot_after']})"
                  for row in plan.datasets]
    if plan.transfers:
        lines.append(f"  transfers (estimated {human_bytes(plan.estimated_bytes)}):")
        for transfer in plan.transfers:
            size = human_bytes(transfer.estimate) if transfer.estimate is not None else "?"
            lines.append(f"    {transfer.source} -> {transfer.target} [{transfer.kind}, "
                         f"{size}]: {transfer.command()}")
    for number, step in enumerate(plan.steps, 1):
        command = f": {step.command}" if step.command else ""
        lines.append(f"  {number}. {step.action} {step.dataset}"
                     + (f" ({step.detail})" if step.detail else "") + command)
    lines += [f"  check: {check}" for check in plan.checks]
    return lines
