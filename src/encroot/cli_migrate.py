"""The ``migrate`` subcommand (see ``encroot.cli``) and its progress line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from .keys import Key
from .migrate import (
    PHASES,
    MigrateRequest,
    PhasePlan,
    Transfer,
    migrate,
    plan_migration,
)
from .migrate.steps import human_bytes
from .zfs import Zfs

__all__ = ["TransferProgress", "add_migrate_commands"]

REDRAW_SECONDS = 0.5


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
                    "run again and continues from what ZFS shows. Exit status 0 on success "
                    "(with -n: when nothing is refused), 1 when refused or failed, 2 for bad "
                    "input.")
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
    parser.add_argument("source", metavar="SRC_POOL_OR_ROOT")
    parser.add_argument("destination", metavar="DST_POOL")
    parser.set_defaults(handler=_migrate)


def _request(args: argparse.Namespace) -> MigrateRequest:
    return MigrateRequest(args.source, args.destination, phase=args.phase or "all",
                          snapshot=args.snapshot, root_data=args.root_data,
                          verify_mount=args.verify == "mount",
                          allow_unencrypted_destination=args.allow_unencrypted_destination)


def _source_key(args: argparse.Namespace, zfs: Zfs, request: MigrateRequest) -> Key | None:
    """SRC root's key, read only when a cutover will run."""
    from .cli_rotate import _read_key

    if "cutover" not in request.phases:
        return None
    table = zfs.get([request.source], ("keyformat",), use_json=False)
    keyformat = table.value(request.source, "keyformat") or "passphrase"
    known = keyformat if keyformat in ("hex", "raw", "passphrase") else None
    if args.key_file:
        return _read_key(args.key_file, known, "--key-file")  # type: ignore[arg-type]
    if args.key_stdin:
        return Key.from_stdin(known)  # type: ignore[arg-type]
    return Key.prompt(known or "passphrase", label=f"{request.source} (SRC root)")  # type: ignore[arg-type]


def _migrate(args: argparse.Namespace) -> int:
    from .cli import EXIT_FAILED, EXIT_OK, emit, say_to_stderr
    from .cli_rotate import _closing_all, _read_key

    request = _request(args)
    zfs = Zfs(log=say_to_stderr if args.verbose else None)
    if args.dry_run:
        plans = plan_migration(zfs, request)
        emit(args.json, {"dry_run": True, "phases": [p.to_json() for p in plans]},
             [line for plan in plans for line in plan_lines(plan)])
        return EXIT_FAILED if any(plan.refusals for plan in plans) else EXIT_OK
    source_key = _source_key(args, zfs, request)
    new_key = _read_key(args.new_key_file, None, "--new-key-file") if args.new_key_file \
        else None
    progress = TransferProgress(sys.stderr)
    with _closing_all([source_key, new_key]):
        result = migrate(zfs, request, source_key=source_key, destination_key=new_key,
                         progress=progress, say=say_to_stderr if args.verbose else _quiet)
    lines = []
    for phase in result.phases:
        snapshot = phase.plan.goal.name if phase.plan.goal else "-"
        lines.append(f"{phase.plan.phase}: done up to @{snapshot}; "
                     f"{len(phase.transfers_run)} transfers, {phase.transferred_bytes} bytes")
        lines += [f"  ok  {line}" for line in phase.verified]
    if "cutover" in request.phases:
        lines.append(f"{request.destination} is imported, its key not loaded and nothing "
                     "mounted: its file systems have SRC's mount points; once SRC is exported, "
                     f"run zfs load-key {request.destination} && zfs mount -a")
    emit(args.json, result.to_json(), lines)
    return EXIT_OK


def _quiet(line: str) -> None:
    del line


def plan_lines(plan: PhasePlan) -> list[str]:
    """A phase plan as text for ``-n``."""
    lines = [f"phase {plan.phase}:"]
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


class TransferProgress:
    """One line per transfer: dataset, bytes of the estimate, rate and ETA.

    On a terminal the line is redrawn in place twice a second; elsewhere
    (logs, CI) only the finished line is printed.
    """

    def __init__(self, out: TextIO, *, clock: Any = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self.live = out.isatty()
        self.transfer: Transfer | None = None
        self.done = 0
        self.started = 0.0
        self.drawn = 0.0

    def start(self, transfer: Transfer) -> None:
        self.transfer, self.done = transfer, 0
        self.started = self.drawn = self.clock()

    def advance(self, count: int) -> None:
        self.done += count
        now = self.clock()
        if self.live and now - self.drawn >= REDRAW_SECONDS:
            self.drawn = now
            self.out.write("\r" + self.line(now) + "\033[K")
            self.out.flush()

    def finish(self, transfer: Transfer, count: int) -> None:
        self.done = count
        ending = "\033[K\n" if self.live else "\n"
        self.out.write(("\r" if self.live else "") + self.line(self.clock(), finished=True)
                       + ending)
        self.out.flush()

    def line(self, now: float, *, finished: bool = False) -> str:
        """``DST/x: 120.0 MiB of 1.0 GiB (12%), 30.0 MiB/s, ETA 0:29``.

        ``zfs send -nP`` only estimates: a stream may outgrow it (small
        incrementals do).  The total then grows with what arrived, so the line
        never reads more done than the total, and a transfer still running
        reads at most 99%; a finished one reads what arrived, 100%.
        """
        assert self.transfer is not None
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        estimate = self.transfer.estimate
        total = self.done if finished else max(estimate or 0, self.done)
        text = f"{self.transfer.target}: {human_bytes(self.done)}"
        if total and (estimate or finished):
            percent = 100 * self.done // total if finished else min(99, 100 * self.done // total)
            text += f" of {human_bytes(total)} ({percent}%)"
        text += f", {human_bytes(int(rate))}/s"
        if not finished and rate > 0 and self.done < total:
            left = int((total - self.done) / rate)
            text += f", ETA {left // 60}:{left % 60:02d}"
        return text
