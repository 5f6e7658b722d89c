"""The ``encroot`` command: a thin layer over the library's public API.

Each subcommand parses its options, calls one library function, prints the
result, and maps errors to exit statuses: 0 success, 1 a failed operation,
2 bad input (usage, names, keys), 3 the lab could not build or run.  An
error is one line on stderr that names the input or the ZFS message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .errors import EncrootError, InputError, LabError, ZfsError, ZfsUnavailable

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LAB = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_lab(commands: argparse._SubParsersAction[_Parser]) -> None:
    from .lab import DEFAULT_VERSION, RECIPES

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
        description="Build the guest image of each --zfs version (repeatable), one after "
                    "the other, unless cached.")
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
    from . import lab

    for version in args.zfs or [None]:
        image = lab.build(version, force=args.force)
        print(f"{image.path}: OpenZFS {image.zfs_package_version}, kernel {image.kernel}, "
              f"Debian {image.suite}")
    return EXIT_OK


def _lab_run(args: argparse.Namespace) -> int:
    from . import lab

    config = lab.GuestConfig(timeout=args.timeout)
    result = lab.run(args.script, args.args, version=args.zfs, out_dir=args.out, config=config)
    return result.returncode


def _lab_test(args: argparse.Namespace) -> int:
    from . import lab

    config = lab.GuestConfig(timeout=args.timeout)
    result = lab.test(pytest_arguments(args.pytest_args), version=args.zfs, out_dir=args.out,
                      config=config, workers=args.workers)
    return result.returncode


def pytest_arguments(remainder: Sequence[str]) -> list[str]:
    """``lab test``'s pytest arguments: a leading ``--`` lets them start with an option
    (``-- -m 'zfs and all_versions' tests/zfs``); argparse keeps it in the remainder."""
    return list(remainder[1:] if remainder[:1] == ["--"] else remainder)


def _lab_shell(args: argparse.Namespace) -> int:
    from . import lab

    return lab.shell(version=args.zfs).returncode


def _lab_summary(args: argparse.Namespace) -> int:
    from .lab.junit import read_run, summarise

    runs = []
    for pair in args.runs:
        label, sep, folder = pair.partition("=")
        if not sep or not label or not folder:
            raise InputError(f"{pair!r}: expected LABEL=DIR", subject=pair)
        runs.append(read_run(label, Path(folder)))
    for line in summarise(runs, slowest=args.slowest):
        print(line)
    return EXIT_OK if all(run.failed == 0 for run in runs) else EXIT_FAILED


def _add_receive(commands: argparse._SubParsersAction[_Parser]) -> None:
    receive = commands.add_parser(
        "receive", aliases=["recv"], add_help=False,
        help="zfs receive, plus replacing a dataset across the encryption boundary",
        usage="%(prog)s [zfs receive options] TARGET\n"
              "       %(prog)s -F [-unsv] [-o PROP=VALUE]... [-x PROP]... [-d|-e] "
              "--allow-encryption-change [--keep-old NAME] [--json] TARGET\n"
              "       %(prog)s --recover [--json] TARGET",
        description="Receive a zfs send stream from standard input. Without "
                    "--allow-encryption-change, --recover, --keep-old, --json or --help, "
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
                    "-d or -e the target is named from the stream as zfs names it.")
    receive.add_argument("--help", action="help", help="show this help and exit")
    receive.add_argument("-F", dest="force", action="store_true", help="replace TARGET")
    receive.add_argument("-u", dest="no_mount", action="store_true",
                         help="do not mount the result; with --allow-encryption-change also "
                              "lets encroot unmount the old tree for the swap (it stays "
                              "mounted while the new one is received and verified; if it is "
                              "busy then, the verified new tree waits for --recover)")
    receive.add_argument("-v", dest="verbose", action="store_true",
                         help="print each step and zfs command")
    receive.add_argument("-n", dest="dry_run", action="store_true",
                         help="print the plan (with --allow-encryption-change) and change "
                              "nothing")
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
    receive.add_argument("--json", action="store_true", help="print one JSON object")
    receive.add_argument("target", metavar="TARGET")
    receive.set_defaults(handler=_receive)


def _receive(args: argparse.Namespace) -> int:
    from . import receive as rx
    from .errors import StreamError
    from .names import DatasetName
    from .zfs import Zfs

    if args.recover:
        target, snapshot = DatasetName(args.target), None
    else:
        target, snapshot = rx.split_target(args.target, args.name_from_stream)
    # Plain receives print only what zfs prints; -v there is zfs's own verbose mode.
    ours = args.allow_encryption_change or args.recover
    zfs = Zfs(log=say_to_stderr if args.verbose and ours else None)
    say = say_to_stderr if args.verbose else _quiet
    if args.recover:
        report = rx.recover(zfs, target, say=say)
        emit(args.json, {"target": str(target), "recovery": report.actions},
               [f"{target}: " + ("; ".join(report.actions) or "nothing to recover")])
        return EXIT_OK
    request = rx.ReceiveRequest(
        target=target, force=args.force, no_mount=args.no_mount, verbose=args.verbose,
        dry_run=args.dry_run, resumable=args.resumable,
        properties=rx.pass_options(args.set_props), excluded=tuple(args.excluded),
        allow_encryption_change=args.allow_encryption_change,
        keep_old=DatasetName(args.keep_old) if args.keep_old else None,
        snapshot=snapshot, name_from_stream=args.name_from_stream)
    try:
        outcome = rx.receive_stream(zfs, request, sys.stdin.fileno(), say=say)
    except StreamError as exc:
        raise StreamError(f"stream on stdin: {exc}", subject="stdin") from exc
    if outcome.plain is not None:
        sys.stdout.write(outcome.plain.stdout)
        sys.stderr.write(outcome.plain.stderr)
        return outcome.plain.returncode
    if outcome.plan is not None:
        emit(args.json, {"dry_run": True, **outcome.plan.to_json()}, _plan_lines(outcome.plan))
        return EXIT_OK
    assert outcome.result is not None
    sys.stderr.write(outcome.result.zfs_output)
    emit(args.json, outcome.result.to_json(), _result_lines(outcome.result))
    return EXIT_OK


def _plan_lines(plan: object) -> list[str]:
    from .receive import ReceivePlan

    assert isinstance(plan, ReceivePlan)
    lines = [f"plan: {plan.mode} {plan.target} (receive into {plan.receive_into})",
             "checks:"] + [f"  ok  {check}" for check in plan.checks]
    lines += [f"  note {note}" for note in plan.notes]
    lines += ["steps:"] + [f"  {n}. {step.action} {step.dataset}"
                           + (f"  ({step.detail})" if step.detail else "")
                           for n, step in enumerate(plan.steps, 1)]
    return lines


def _encryption_text(props: dict[str, str] | None) -> str:
    if props is None:
        return "(did not exist)"
    return (f"encryption {props['encryption']}, encryption root {props['encryptionroot']}, "
            f"key {props['keystatus']}")


def _result_lines(result: object) -> list[str]:
    from .receive import ReceiveResult

    assert isinstance(result, ReceiveResult)
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
    if plan.mode == "replace" and plan.old and any(s.action == "keep-old" for s in plan.steps):
        lines.append(f"  old tree kept as {plan.old}")
    return lines


def _add_stream(commands: argparse._SubParsersAction[_Parser]) -> None:
    stream = commands.add_parser("stream", help="look at zfs send streams")
    sub = stream.add_subparsers(dest="stream_command", required=True, metavar="COMMAND")
    inspect = sub.add_parser(
        "inspect", help="what a stream holds, from its header",
        description="Read a send stream's header (first records and, for a replication "
                    "package, its list of datasets and snapshots) without ZFS and without "
                    "reading the rest of the stream.")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("file", metavar="FILE|-", help="a stream file, or - for stdin")
    inspect.set_defaults(handler=_stream_inspect)


def _stream_inspect(args: argparse.Namespace) -> int:
    from .errors import StreamError
    from .stream import peek_stream

    source = "stream on stdin" if args.file == "-" else f"stream file {args.file!r}"
    try:
        if args.file == "-":
            peeked = peek_stream(sys.stdin.fileno())
        else:
            with open(args.file, "rb", buffering=0) as handle:
                peeked = peek_stream(handle.fileno())
    except OSError as exc:
        raise InputError(f"{source}: cannot read it ({exc.strerror})", subject=source) from exc
    except StreamError as exc:
        raise StreamError(f"{source}: {exc}", subject=source) from exc
    info = peeked.info
    lines = [f"{'replication package' if info.package else 'single stream'}: "
             f"{'full' if info.full else 'incremental'}, {'raw' if info.raw else 'not raw'}"
             f"{', resuming' if info.resuming else ''}",
             f"  to: {info.toname} (guid {info.toguid})"]
    if info.fromsnap or info.fromguid:
        lines.append(f"  from: {info.fromsnap or ''} (guid {info.fromguid})")
    lines.append(f"  features: {', '.join(info.features) or '-'}; {info.byte_order}; "
                 f"header {info.header_bytes} bytes")
    for dataset in info.datasets:
        root = " [encryption root]" if dataset.is_encroot else ""
        lines.append(f"  dataset {dataset.name}{root}")
        lines += [f"    @{snap.name} guid {snap.guid}" for snap in dataset.snapshots]
    emit(args.json, info.to_json(), lines)
    return EXIT_OK


def say_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _quiet(line: str) -> None:
    del line


def emit(as_json: bool, document: dict[str, object], lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n".join(lines))


_Adder = Callable[["argparse._SubParsersAction[_Parser]"], None]


def _add_rotate(commands: argparse._SubParsersAction[_Parser]) -> None:
    from .cli_rotate import add_rotate_commands

    add_rotate_commands(commands)


def _add_doctor(commands: argparse._SubParsersAction[_Parser]) -> None:
    from .cli_doctor import add_doctor_commands

    add_doctor_commands(commands)


def _add_migrate(commands: argparse._SubParsersAction[_Parser]) -> None:
    from .cli_migrate import add_migrate_commands

    add_migrate_commands(commands)


def _add_convert(commands: argparse._SubParsersAction[_Parser]) -> None:
    from .cli_convert import add_convert_commands

    add_convert_commands(commands)


# Each command's words and the function that adds its parser.  Only the invoked
# command's module is imported: under the lab's emulation importing every
# operation cost each `encroot` start seconds.
_COMMANDS: tuple[tuple[tuple[str, ...], _Adder], ...] = (
    (("receive", "recv"), _add_receive),
    (("change-key", "recover", "get"), _add_rotate),
    (("doctor", "status"), _add_doctor),
    (("migrate",), _add_migrate),
    (("encrypt", "reencrypt", "decrypt"), _add_convert),
    (("stream",), _add_stream),
    (("lab",), _add_lab),
)


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is no option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``encroot`` parser: every command, or with ``argv`` only the one it names.

    An unknown word, or none, gets every command, so that usage errors and
    ``--help`` list them all.
    """
    parser = _Parser(
        prog="encroot",
        description="Life-cycle tooling for OpenZFS native encryption.",
    )
    parser.add_argument("--version", action="version",
                        version=f"encroot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    word = None if argv is None else _command_word(argv)
    known = any(word in words for words, _ in _COMMANDS)
    for words, add in _COMMANDS:
        if not known or word in words:
            add(commands)
    return parser


def _fail(message: str, status: int) -> int:
    print(f"encroot: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (the console script exits with it).

    ``encroot receive`` and ``encroot change-key`` asking for nothing encroot
    adds become ``zfs receive`` / ``zfs change-key`` with the same arguments
    (``cli_dropin``): this process is replaced and never returns here.
    """
    from .cli_dropin import drop_in, hand_over

    arguments = list(sys.argv[1:] if argv is None else argv)
    handover = drop_in(arguments)
    if handover is not None:
        from .zfs import Zfs

        return _guarded(lambda: hand_over(Zfs(), handover))
    args = build_parser(arguments).parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return _guarded(lambda: handler(args))


def _guarded(run: Callable[[], int]) -> int:
    """Run one command; map encroot's errors to one line on stderr and an exit status."""
    try:
        return run()
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except LabError as exc:
        return _fail(str(exc), EXIT_LAB)
    except (ZfsError, ZfsUnavailable) as exc:
        return _fail(str(exc), EXIT_FAILED)
    except EncrootError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
