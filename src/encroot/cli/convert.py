"""The ``encrypt``, ``reencrypt`` and ``decrypt`` subcommands (see ``encroot.cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError
from ..keys import Key, KeyFormat
from ..names import DatasetName
from ..zfs import Zfs
from .common import Exit, emit, quiet, say_to_stderr
from .keyfiles import closing_all, read_key
from .progress import TransferProgress

__all__ = ["add_convert_commands", "plan_lines"]

KEY_OPTIONS = ("keyformat", "keylocation", "pbkdf2iters")
_DESCRIPTIONS = {
    "encrypt": "Encrypt the unencrypted tree DATASET in place: its filesystems, volumes, "
               "snapshots, clones, properties and holds are copied (non-raw, re-encrypted on "
               "receive) into DATASET.encroot-convert while DATASET stays in use (phases "
               "initial and catch-up), then cutover unmounts DATASET (the only downtime), "
               "sends the last changes, verifies every snapshot GUID and the encryption, "
               "swaps the trees by renames, mounts the new one where the old one was and only "
               "then destroys the old tree (or keeps it with --keep-old).",
    "reencrypt": "Re-encrypt the encrypted tree DATASET with a new master key (and a new key, "
                 "optionally a new key format): zfs change-key only re-wraps the master key, "
                 "so anyone with the old key and a copy of the old wrapped key could still "
                 "read everything. Same phases as encroot encrypt.",
    "decrypt": "Store the encrypted tree DATASET unencrypted (needs --allow-plaintext). Same "
               "phases as encroot encrypt.",
}


def add_convert_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add encrypt, reencrypt and decrypt to the ``encroot`` parser."""
    for operation in ("encrypt", "reencrypt", "decrypt"):
        _add(commands, operation)


def _add(commands: argparse._SubParsersAction[Any], operation: str) -> None:
    parser = commands.add_parser(
        operation, help=_DESCRIPTIONS[operation].split(":")[0].split(" (")[0],
        description=_DESCRIPTIONS[operation] + " Without --phase: initial, then cutover. An "
        "interrupted phase is run again and continues from what ZFS shows; --recover "
        "finishes a verified swap or undoes an unfinished conversion. Exit status 0 on "
        "success (with -n: nothing refused), 1 when refused or failed, 2 for bad input.")
    parser.add_argument("-n", dest="dry_run", action="store_true",
                        help="print the plan (datasets, streams, estimated bytes, space, what "
                             "does not carry over, each step's zfs commands as shell lines) "
                             "and change nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-v", dest="verbose", action="store_true",
                        help="print every zfs command (keys shown as <secret>)")
    if operation != "decrypt":
        keys = parser.add_mutually_exclusive_group()
        keys.add_argument("--key-file", metavar="FILE", help="the new key")
        keys.add_argument("--key-stdin", action="store_true", help="read the new key from stdin")
        parser.add_argument("-o", dest="options", action="append", default=[],
                            metavar="PROP=VALUE",
                            help="keyformat=F, keylocation=L or pbkdf2iters=N of the new "
                                 "encryption root")
        parser.add_argument("--inherit", action="store_true",
                            help="the new tree inherits the encrypted parent's key instead "
                                 "of becoming its own encryption root")
    else:
        parser.add_argument("--allow-plaintext", action="store_true",
                            help="required: the tree's data will be stored unencrypted")
    parser.add_argument("--phase", choices=("initial", "catch-up", "cutover"),
                        help="run one phase only (catch-up is repeatable)")
    parser.add_argument("--keep-old", metavar="NAME",
                        help="keep the old tree under NAME (unmounted, canmount=noauto) "
                             "instead of destroying it")
    parser.add_argument("--verify", choices=("guid", "mount"), default="guid",
                        help="guid (default): every snapshot GUID and the encryption; mount: "
                             "also every file's SHA-256 (the old tree mounted read-only "
                             "during the downtime)")
    parser.add_argument("--recover", action="store_true",
                        help="finish a verified swap or undo an unfinished conversion, and exit")
    parser.add_argument("dataset", metavar="DATASET")
    parser.set_defaults(handler=_convert, operation=operation)


def _options(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or name not in KEY_OPTIONS:
            raise InputError(f"-o {value!r}: use keyformat=F, keylocation=L or pbkdf2iters=N",
                             subject="-o")
        if name in found:
            raise InputError(f"-o {name}: given twice", subject="-o")
        found[name] = text
    return found


def _request(args: argparse.Namespace) -> Any:
    from ..convert import ConvertRequest

    options = _options(getattr(args, "options", []))
    iterations = options.get("pbkdf2iters")
    if iterations is not None and not iterations.isdigit():
        raise InputError(f"-o pbkdf2iters={iterations}: must be a whole number",
                         subject="pbkdf2iters")
    return ConvertRequest(
        args.operation, DatasetName(args.dataset), phase=args.phase or "all",
        keyformat=options.get("keyformat"), keylocation=options.get("keylocation"),
        pbkdf2iters=int(iterations) if iterations else None,
        inherit=getattr(args, "inherit", False),
        keep_old=DatasetName(args.keep_old) if args.keep_old else None,
        verify_mount=args.verify == "mount",
        allow_plaintext=getattr(args, "allow_plaintext", False))


def _key(args: argparse.Namespace, request: Any) -> Key | None:
    """The new root's key: --key-file, --key-stdin, the keylocation file, else the terminal
    (only when the initial phase will create the new root)."""

    if not request.own_root:
        return None
    keyformat: KeyFormat | None = request.keyformat
    if args.key_file:
        return read_key(args.key_file, keyformat, "--key-file")
    if args.key_stdin:
        return Key.from_stdin(keyformat)
    location = request.keylocation or ""
    if location.startswith("file://"):
        return read_key(location[len("file://"):], keyformat, "keylocation file")
    if "initial" not in request.phases:
        return None  # the new root exists; its key is loaded, or the run says to give it
    if location.startswith("https://"):
        raise InputError("-o keylocation=https://...: give the key with --key-file or "
                         "--key-stdin too (encroot does not fetch it)", subject="keylocation")
    return Key.prompt(keyformat or "passphrase", confirm=True,
                      label=f"{request.dataset} (new)")


def _convert(args: argparse.Namespace) -> int:
    from .. import convert as cv

    request = _request(args)
    zfs = Zfs(log=say_to_stderr if args.verbose else None)
    say = say_to_stderr if args.verbose else quiet
    if args.recover:
        report = cv.recover(zfs, request, say=say)
        emit(args.json, {"dataset": request.dataset, "recovery": report.actions},
             [f"{request.dataset}: " + ("; ".join(report.actions) or "nothing to recover")])
        return Exit.OK
    if args.dry_run:
        plans = cv.plan_conversion(zfs, request, key_given=True)
        emit(args.json, {"dry_run": True, "phases": [p.to_json() for p in plans]},
             [line for plan in plans for line in plan_lines(plan)])
        return Exit.FAILED if any(plan.refusals for plan in plans) else Exit.OK
    with closing_all([_key(args, request)]) as keys:
        result = cv.convert(zfs, request, key=keys[0], progress=TransferProgress(sys.stderr),
                            say=say)
    lines = []
    for phase in result.phases:
        lines.append(f"{phase.plan.phase}: done up to @{phase.plan.goal}; "
                     f"{len(phase.transfers_run)} transfers, {phase.transferred_bytes} bytes")
        lines += [f"  verified: {line}" for line in phase.verified]
        lines += [f"  {action}" for action in phase.swap]
        if phase.downtime is not None:
            lines.append(f"  downtime: {phase.downtime:.1f} s (the old tree was unmounted)")
    lines += [f"note: {line}" for line in result.hygiene]
    emit(args.json, result.to_json(), lines)
    return Exit.OK


def plan_lines(plan: Any) -> list[str]:
    """A phase plan as text for ``-n``."""
    from ..convert.plan import human_bytes

    lines = [f"{plan.operation} {plan.dataset}, phase {plan.phase} (snapshot "
             f"@{plan.goal}):"]
    lines += [f"  REFUSED: {refusal}" for refusal in plan.refusals]
    lines += [f"  ok  {check}" for check in plan.checks]
    lines += [f"  note: {note}" for note in plan.notes]
    if plan.datasets:
        lines.append("  datasets (send order):")
        lines += [f"    {row['dataset']} -> {row['new']} ({row['type']}, {row['snapshots']} "
                  "snapshots" + (f", clone of {row['origin']}" if row["origin"] else "")
                  + ")" for row in plan.datasets]
    if plan.transfers:
        lines.append(f"  transfers (estimated {human_bytes(plan.estimated_bytes)}; "
                     f"{human_bytes(plan.available)} available):")
        lines += [f"    [{t.kind}, {human_bytes(t.estimate) if t.estimate is not None else '?'}"
                  f"] {t.command()}" for t in plan.transfers]
    lines += [f"  drop {name} (no longer in the old tree)" for name in plan.drops]
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"  {number}. {step.action.value} {step.dataset}"
                     + (f" ({step.detail})" if step.detail else ""))
        lines += [f"       {command.shell_line()}" for command in step.commands]
    return lines
