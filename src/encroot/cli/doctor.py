"""The ``doctor`` and ``status`` subcommands (see ``encroot.cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..doctor import (
    SEVERITY_ORDER,
    STATUS_COLUMNS,
    Finding,
    FixPlan,
    apply_fixes,
    audit,
    key_opens_with,
    plan_fixes,
    read_audit_state,
    status_rows,
)
from ..errors import EncrootError, InputError, RemoteError, ZfsError
from ..hosts import Location
from ..zfs import Zfs
from ..zfs.masters import SshMasters
from .common import Exit, emit
from .remote import LOCATION_HELP, add_ssh_options, one_host, zfs_for

__all__ = ["add_doctor_commands"]

def add_doctor_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add doctor and status to the ``encroot`` parser."""
    doctor = commands.add_parser(
        "doctor", help="audit encryption hierarchies; repair the safe findings",
        description="Audit the encryption of every dataset in the given pools or datasets "
                    "(default: every imported pool): which key each needs, what will fail at "
                    "the next boot, what a raw incremental would break, what encroot left "
                    "behind. Each finding has a stable code, a severity, an explanation and "
                    "the command that fixes it. The targets may be on another host (all on "
                    "the same one; --fix only here). " + LOCATION_HELP + " Exit status 0 "
                    "when nothing is at warning level or above, 1 when something is, 2 when "
                    "the audit could not run, 4 when the remote host cannot be used.")
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument("--fix", action="store_true",
                        help="apply the repairs that cannot lose data or access (re-parent "
                             "when both keys are loaded, the key is provably the parent's "
                             "and the dataset is no raw replica; finish an interrupted "
                             "change-key; clean up after an interrupted receive whose "
                             "process is gone) and list every finding left, with the reason")
    doctor.add_argument("-n", dest="dry_run", action="store_true",
                        help="with --fix: show what it would do and change nothing")
    add_ssh_options(doctor)
    doctor.add_argument("targets", nargs="*", metavar="[[USER@]HOST:]POOL|DATASET")
    doctor.set_defaults(handler=_doctor)

    status = commands.add_parser(
        "status", help="a table of every dataset's encryption, root and key",
        description="One row per dataset: encryption, encryption root, key format, key "
                    "location, key status, and whether it is its own root or inherits. "
                    + LOCATION_HELP)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    add_ssh_options(status)
    status.add_argument("targets", nargs="*", metavar="[[USER@]HOST:]POOL|DATASET")
    status.set_defaults(handler=_status)


def _one_host(texts: list[str]) -> tuple[Location, list[str]]:
    return one_host(texts, "audit one host per run")


def _doctor(args: argparse.Namespace) -> int:
    where, targets = _one_host(args.targets)
    if where.remote and args.fix:
        raise InputError(f"--fix on {where.host_label}: key files and live processes are "
                         "checked on this host; run encroot doctor --fix there",
                         subject="--fix")
    with SshMasters(tuple(args.ssh_options)) as masters:
        # -n stops after plan_fixes: nothing below it is faked
        return _audit(args, zfs_for(where, masters), targets)


def _audit(args: argparse.Namespace, zfs: Zfs, targets: list[str]) -> int:
    try:
        state = read_audit_state(zfs, targets)
    except RemoteError:
        raise
    except (ZfsError, EncrootError) as exc:
        print(f"encroot: doctor: the audit could not run: {exc}", file=sys.stderr)
        return Exit.AUDIT_NOT_RUN
    # keylocation files of a remote pool are that host's: not checked from here
    findings = audit(state) if zfs.remote is None else audit(state, key_file=_unchecked)
    fixed: list[dict[str, object]] = []
    plan = FixPlan()
    if args.fix:
        plan = plan_fixes(findings, state, key_opens=key_opens_with(zfs))
        if args.dry_run:
            fixed = [{**f.as_json(), "done": False, "detail": "would run (dry run)"}
                     for f in plan.fixes]
        else:
            fixed = [{**o.fix.as_json(), "done": o.done, "detail": o.detail}
                     for o in apply_fixes(zfs, plan.fixes)]
            if plan.fixes:
                state = read_audit_state(zfs, targets)
                findings = audit(state)
    worst = max((SEVERITY_ORDER[f.severity] for f in findings), default=-1)
    document: dict[str, object] = {"findings": [f.as_json() for f in findings],
                                   "fixes": fixed, "datasets": len(state.props)}
    if args.fix:
        document["not_repaired"] = [n.as_json() for n in plan.not_repaired]
    emit(args.json, document, _doctor_lines(findings, fixed, plan, len(state.props)))
    # --fix refuses what a running encroot holds, and says so with exit status 1
    blocked = any(n.finding.code == "operation-in-progress" for n in plan.not_repaired)
    failed = any(not f["done"] for f in fixed) and not args.dry_run
    return Exit.FAILED if worst >= SEVERITY_ORDER["warning"] or blocked or failed else Exit.OK


def _doctor_lines(findings: list[Finding], fixed: list[dict[str, object]], plan: FixPlan,
                  datasets: int) -> list[str]:
    lines = [f"{'fixed' if f['done'] else 'not fixed'}: {f['command']} ({f['detail']})"
             for f in fixed]
    lines += [f"not repaired: {n.finding.code} {n.finding.dataset}: {n.reason}"
              for n in plan.not_repaired]
    for finding in findings:
        lines.append(f"{finding.severity.upper():7} {finding.code:28} {finding.dataset}")
        lines.append(f"        {finding.message}")
        if finding.fix_line:
            lines.append(f"        fix: {finding.fix_line}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITY_ORDER}
    lines.append(f"{datasets} datasets audited: {counts['error']} errors, "
                 f"{counts['warning']} warnings, {counts['info']} notes")
    return lines


def _unchecked(path: str, keyformat: str) -> str | None:
    del path, keyformat
    return None


def _status(args: argparse.Namespace) -> int:
    where, targets = _one_host(args.targets)
    with SshMasters(tuple(args.ssh_options)) as masters:
        rows = status_rows(read_audit_state(zfs_for(where, masters), targets))
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in STATUS_COLUMNS}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in STATUS_COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in STATUS_COLUMNS).rstrip() for r in rows]
    emit(args.json, {"datasets": rows}, lines)
    return Exit.OK
