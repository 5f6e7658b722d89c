"""The ``receive`` subcommand with encroot's own options (the plain form is ``dropin``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .common import Exit, Parser, Subcommands, emit, quiet, say_to_stderr
from .remote import LOCATION_HELP, add_ssh_options

if TYPE_CHECKING:
    from ..hosts import Location
    from ..receive import ReceivePlan, ReceiveResult
    from ..zfs import Zfs

__all__ = ["add_receive_commands"]


def add_receive_commands(commands: Subcommands[Parser]) -> None:
    receive = commands.add_parser(
        "receive", aliases=["recv"], add_help=False,
        help="zfs receive, plus replacing a dataset across the encryption boundary",
        usage="%(prog)s [zfs receive options] [--ssh-option ARG]... [[USER@]HOST:]TARGET\n"
              "       %(prog)s -F [-unsv] [-o PROP=VALUE]... [-x PROP]... [-d|-e] "
              "--allow-encryption-change [--keep-old NAME] [--take-over HOST_ID] "
              "[--ssh-option ARG]... [--json] [[USER@]HOST:]TARGET\n"
              "       %(prog)s --recover [--take-over HOST_ID] [--ssh-option ARG]... "
              "[--json] [[USER@]HOST:]TARGET",
        description="Receive a zfs send stream from standard input. Without "
                    "--allow-encryption-change, --recover, --keep-old, --take-over, --json "
                    "or --help, "
                    "encroot runs zfs receive itself (exec) with the arguments exactly as "
                    "given, so every option of the installed zfs (-F -d -e -h -M -n -s -u -v "
                    "-c -A -o -x, bundled as -Fdu or not), its messages, exit statuses and "
                    "stream speed are zfs's own; -h there is zfs's 'skip holds', not help. "
                    "With --allow-encryption-change (and -F), a full stream may replace an "
                    "existing TARGET whose encryption state differs: encroot receives into "
                    "TARGET.encroot-recv while the old tree stays mounted, verifies every "
                    "snapshot GUID and the encryption state, unmounts the old tree only for "
                    "the swap by renames, and only then destroys it; if encroot is killed, "
                    "the zfs receive it started ends too. That mode takes only the options "
                    "below (zfs's -h -M -c -A are not among them); TARGET may be "
                    "FILESYSTEM@SNAPSHOT (the received snapshot is named SNAPSHOT), and with "
                    "-d or -e the target is named from the stream as zfs names it. "
                    "TARGET may be on another host, the stream still on encroot's stdin: "
                    "without encroot's options encroot checks that host's zfs, then becomes "
                    "ssh HOST zfs receive ARGS (that zfs's options, messages and exit "
                    "statuses, ssh's 255 for its own failures); with "
                    "--allow-encryption-change or --recover every step runs there over ssh "
                    "and encroot relays the stream into ssh HOST zfs receive (if encroot "
                    "dies, that receive sees its stream end). " + LOCATION_HELP)
    receive.add_argument("--help", action="help", help="show this help and exit")
    receive.add_argument("-F", dest="force", action="store_true", help="replace TARGET")
    receive.add_argument("-u", dest="no_mount", action="store_true",
                         help="do not mount the result; with --allow-encryption-change also "
                              "lets encroot unmount the old tree for the swap (it stays "
                              "mounted while the new one is received and verified; if it is "
                              "busy then, the verified new tree waits for --recover)")
    receive.add_argument("-v", dest="verbose", action="store_true",
                         help="print each step and each zfs command as it runs")
    receive.add_argument("-n", dest="dry_run", action="store_true",
                         help="print the plan (with --allow-encryption-change): each step "
                              "with the zfs commands it runs, as shell lines; change nothing")
    receive.add_argument("-s", dest="resumable", action="store_true",
                         help="keep a partial receive resumable (zfs send -t)")
    receive.add_argument("-o", dest="set_props", action="append", default=[],
                         metavar="PROP=VALUE", help="set a property on the received data")
    receive.add_argument("-x", dest="excluded", action="append", default=[], metavar="PROP",
                         help="exclude a property of the stream")
    naming = receive.add_mutually_exclusive_group()
    naming.add_argument("-d", dest="name_from_stream", action="store_const", const="-d",
                        default="", help="TARGET is an existing file system below which "
                        "the stream's name without its pool decides where it lands, as in "
                        "zfs receive -d")
    naming.add_argument("-e", dest="name_from_stream", action="store_const", const="-e",
                        help="TARGET is an existing file system below which the last element "
                        "of the stream's name decides where it lands, as in zfs receive -e")
    receive.add_argument("--allow-encryption-change", action="store_true",
                         help="let a full stream replace TARGET across the encryption "
                              "boundary (requires -F)")
    receive.add_argument("--keep-old", metavar="NAME",
                         help="keep the replaced tree under NAME instead of destroying it")
    receive.add_argument("--recover", action="store_true",
                         help="finish or undo an interrupted replacement of TARGET and exit")
    receive.add_argument("--take-over", metavar="HOST_ID",
                         help="TARGET's state carries a marker of an encroot on another host, "
                              "whose liveness cannot be checked from here: go on, that run is "
                              "gone (the refusal names the host id to give)")
    add_ssh_options(receive)
    receive.add_argument("--json", action="store_true", help="print one JSON object")
    receive.add_argument("target", metavar="[[USER@]HOST:]TARGET")
    receive.set_defaults(handler=_receive)


def _receive(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..hosts import parse_location
    from ..zfs.masters import SshMasters
    from .remote import zfs_for

    location = parse_location(args.target)
    if args.ssh_options and not location.remote:
        raise InputError(f"--ssh-option: {location.dataset} is on this host (a remote target "
                         "is [USER@]HOST:TARGET)", subject="--ssh-option")
    # Plain receives print only what zfs prints; -v there is zfs's own verbose mode.
    ours = args.allow_encryption_change or args.recover
    with SshMasters(tuple(args.ssh_options)) as masters:
        zfs = zfs_for(location, masters, log=say_to_stderr if args.verbose and ours else None)
        return _run(args, zfs, location)


def _run(args: argparse.Namespace, zfs: Zfs, location: Location) -> int:
    from .. import receive as rx
    from ..errors import StreamError
    from ..names import DatasetName

    if args.recover:
        target, snapshot = DatasetName(location.dataset), None
    else:
        target, snapshot = rx.split_target(location.dataset, args.name_from_stream)
    say = say_to_stderr if args.verbose else quiet
    host = {"host": location.host_label} if location.remote else {}
    if args.recover:
        report = rx.recover(zfs, target, take_over=args.take_over, say=say)
        emit(args.json, {"target": str(target), "recovery": report.actions, **host},
             [f"{location.host_label + ':' if location.remote else ''}{target}: "
              + ("; ".join(report.actions) or "nothing to recover")])
        return Exit.OK
    request = rx.ReceiveRequest(
        target=target, force=args.force, no_mount=args.no_mount, verbose=args.verbose,
        dry_run=args.dry_run, resumable=args.resumable,
        properties=rx.pass_options(args.set_props), excluded=tuple(args.excluded),
        allow_encryption_change=args.allow_encryption_change,
        keep_old=DatasetName(args.keep_old) if args.keep_old else None,
        snapshot=snapshot, name_from_stream=args.name_from_stream)
    try:
        outcome = rx.receive_stream(zfs, request, sys.stdin.fileno(), say=say,
                                    take_over=args.take_over)
    except StreamError as exc:
        raise StreamError(f"stream on stdin: {exc}", subject="stdin") from exc
    if outcome.plain is not None:
        sys.stdout.write(outcome.plain.stdout)
        sys.stderr.write(outcome.plain.stderr)
        return outcome.plain.returncode
    if outcome.plan is not None:
        emit(args.json, {"dry_run": True, **outcome.plan.to_json(), **host},
             _plan_lines(outcome.plan, location))
        return Exit.OK
    assert outcome.result is not None
    sys.stderr.write(outcome.result.zfs_output)
    emit(args.json, {**outcome.result.to_json(), **host}, _result_lines(outcome.result))
    return Exit.OK


def _plan_lines(plan: ReceivePlan, location: Location | None = None) -> list[str]:
    where = f" on {location.host_label}" if location is not None and location.remote else ""
    lines = [f"plan: {plan.mode} {plan.target}{where} (receive into {plan.receive_into})",
             "checks:"] + [f"  ok  {check}" for check in plan.checks]
    lines += [f"  note {note}" for note in plan.notes]
    lines.append("steps:")
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"  {number}. {step.action.value} {step.dataset}"
                     + (f"  ({step.detail})" if step.detail else ""))
        lines += [f"       {command.shell_line()}" for command in step.commands]
    return lines


def _encryption_text(props: dict[str, str] | None) -> str:
    if props is None:
        return "(did not exist)"
    return (f"encryption {props['encryption']}, encryption root {props['encryptionroot']}, "
            f"key {props['keystatus']}")


def _result_lines(result: ReceiveResult) -> list[str]:
    plan = result.plan
    verb = {"replace": "replaced", "create": "created", "incremental": "updated",
            "resume": "resumed"}[plan.mode]
    lines = []
    if result.recovery and result.recovery.actions:
        lines.append("recovered first: " + "; ".join(result.recovery.actions))
    lines += [f"{verb} {plan.target}",
              f"  old: {_encryption_text(plan.old_encryption)}",
              f"  new: {_encryption_text(result.new_encryption)}",
              f"  snapshots: {', '.join(result.snapshots) or '-'}"]
    if plan.kept_old:
        lines.append(f"  old tree kept as {plan.kept_old}")
    return lines
