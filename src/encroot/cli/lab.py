"""The ``lab`` subcommands: build guest images, run scripts and tests in real OpenZFS."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from .common import Exit, Parser, Subcommands

__all__ = ["add_lab_commands", "pytest_arguments"]


def add_lab_commands(commands: Subcommands[Parser]) -> None:
    from ..lab import DEFAULT_VERSION, RECIPES

    versions = ", ".join(sorted(RECIPES))
    lab = commands.add_parser(
        "lab", help="real OpenZFS in a QEMU guest: build, run a script, run tests",
        description="Build (once, then cached) a small Debian guest with OpenZFS from Debian's "
                    "packages and run things in it. Building needs root and takes about 10 "
                    "minutes the first time; each run boots a fresh guest (about 20 s).")
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")

    def with_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--zfs", metavar="VERSION", default=DEFAULT_VERSION,
                            help=f"OpenZFS version: {versions} (default {DEFAULT_VERSION})")
        return parser

    build = sub.add_parser(
        "build", help="build guest images unless cached",
        description="Build the guest image of each --zfs version (repeatable) unless "
                    "cached. Several images build side by side, their compile steps "
                    "one at a time.")
    build.add_argument("--zfs", metavar="VERSION", action="append",
                       help=f"OpenZFS version: {versions}; repeat for several "
                            f"(default {DEFAULT_VERSION})")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.set_defaults(handler=_lab_build)

    run = with_version(sub.add_parser(
        "run", help="run a host script with bash as root in a fresh guest",
        description="Run SCRIPT (a host file) with bash as root in a fresh guest, with this "
                    "checkout's encroot on PATH. Files the script writes under $OUT come back "
                    "to --out; the exit status is the script's."))
    run.add_argument("--out", metavar="DIR", type=Path, help="where $OUT's files go")
    run.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                     help="kill the guest after this long (default 3600)")
    run.add_argument("script", type=Path, metavar="SCRIPT")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    run.set_defaults(handler=_lab_run)

    test = with_version(sub.add_parser(
        "test", help="run the project's ZFS tests inside a fresh guest",
        description="Run pytest -m zfs inside a fresh guest; extra arguments go to pytest "
                    "(default: tests/zfs); put -- before them when they start with an option "
                    "(-- -m 'zfs and all_versions' tests/zfs)."))
    test.add_argument("--out", metavar="DIR", type=Path, help="where junit.xml goes")
    test.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    test.add_argument("--workers", type=int, default=1, metavar="N",
                      help="run N pytest processes at once in the guest, a test module at a "
                           "time each (default 1)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST ARGS")
    test.set_defaults(handler=_lab_test)

    pair = sub.add_parser(
        "pair", help="run two scripts in two guests linked only to each other",
        description="Boot guest a (--zfs-a) and guest b (--zfs-b) side by side, linked by one "
                    "network device each over the host's loopback and nothing else, and run "
                    "SCRIPT_A in a and SCRIPT_B (default: SCRIPT_A again) in b, with bash as "
                    "root. In each guest LAB_ROLE is a or b, LAB_IFACE the link, LAB_SELF_ADDR "
                    "and LAB_PEER_ADDR the IPv6 link-local addresses with %IFACE; "
                    "'lab-barrier NAME' waits for the other guest, and 'lab-ssh-setup' starts "
                    "sshd and makes 'ssh peer' work both ways. Output lines start with [a] or "
                    "[b]; $OUT files come back to --out DIR/a and DIR/b. The exit status is 0 "
                    "only when both scripts exited 0.")
    pair.add_argument("--zfs-a", metavar="VERSION", default=DEFAULT_VERSION,
                      help=f"guest a's OpenZFS version: {versions} (default {DEFAULT_VERSION})")
    pair.add_argument("--zfs-b", metavar="VERSION", default=DEFAULT_VERSION,
                      help=f"guest b's OpenZFS version (default {DEFAULT_VERSION})")
    pair.add_argument("--out", metavar="DIR", type=Path,
                      help="where $OUT's files go (DIR/a and DIR/b)")
    pair.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                      help="kill a guest after this long (default 3600)")
    pair.add_argument("--grace", type=float, default=60.0, metavar="SECONDS",
                      help="when one script failed, kill the other guest this long after "
                           "(default 60)")
    pair.add_argument("script_a", type=Path, metavar="SCRIPT_A")
    pair.add_argument("script_b", type=Path, metavar="SCRIPT_B", nargs="?")
    pair.set_defaults(handler=_lab_pair)

    shell = with_version(sub.add_parser("shell", help="an interactive root shell in a guest"))
    shell.set_defaults(handler=_lab_shell)

    summary = sub.add_parser(
        "summary", help="summarise JUnit results: a line per run, the slowest tests, the total",
        description="Read LABEL=DIR pairs (DIR holding junit.xml, as `lab test --out` writes "
                    "it) and print one line per run, its failures, skips and slowest tests, "
                    "and a closing 'total: N passed, N failed' line. Exit status 1 when a "
                    "test failed or a run wrote no results.")
    summary.add_argument("--slowest", type=int, default=10, metavar="N",
                         help="list the N slowest tests of each run (default 10)")
    summary.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    summary.set_defaults(handler=_lab_summary)


def _lab_build(args: argparse.Namespace) -> int:
    from .. import lab

    for image in lab.build_all(args.zfs or [None], force=args.force):
        print(f"{image.path}: OpenZFS {image.zfs_package_version}, kernel {image.kernel}, "
              f"Debian {image.suite}")
    return Exit.OK


def _lab_run(args: argparse.Namespace) -> int:
    from .. import lab

    config = lab.GuestConfig(timeout=args.timeout)
    result = lab.run(args.script, args.args, version=args.zfs, out_dir=args.out, config=config)
    return result.returncode


def _lab_test(args: argparse.Namespace) -> int:
    from .. import lab

    config = lab.GuestConfig(timeout=args.timeout)
    result = lab.test(pytest_arguments(args.pytest_args), version=args.zfs, out_dir=args.out,
                      config=config, workers=args.workers)
    return result.returncode


def _lab_pair(args: argparse.Namespace) -> int:
    from .. import lab
    from ..lab.pair import PAIR_MEMORY_MIB

    config = lab.GuestConfig(memory_mib=PAIR_MEMORY_MIB, timeout=args.timeout)
    result = lab.pair(args.script_a, args.script_b, version_a=args.zfs_a,
                      version_b=args.zfs_b, out_dir=args.out, config=config, grace=args.grace)
    return result.returncode


def pytest_arguments(remainder: Sequence[str]) -> list[str]:
    """``lab test``'s pytest arguments: a leading ``--`` lets them start with an option
    (``-- -m 'zfs and all_versions' tests/zfs``); argparse keeps it in the remainder."""
    return list(remainder[1:] if remainder[:1] == ["--"] else remainder)


def _lab_shell(args: argparse.Namespace) -> int:
    from .. import lab

    return lab.shell(version=args.zfs).returncode


def _lab_summary(args: argparse.Namespace) -> int:
    from ..lab.junit import read_run, summarise

    runs = []
    for pair in args.runs:
        label, sep, folder = pair.partition("=")
        if not sep or not label or not folder:
            raise InputError(f"{pair!r}: expected LABEL=DIR", subject=pair)
        runs.append(read_run(label, Path(folder)))
    for line in summarise(runs, slowest=args.slowest):
        print(line)
    return Exit.OK if all(run.failed == 0 for run in runs) else Exit.FAILED
