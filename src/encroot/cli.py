"""The ``encroot`` command: a thin layer over the library's public API.

Each subcommand parses its options, calls one library function, prints the
result, and maps errors to exit statuses: 0 success, 1 a failed operation,
2 bad input (usage, names, keys), 3 the lab could not build or run.  An
error is one line on stderr that names the input or the ZFS message.
"""

from __future__ import annotations

import argparse
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

    build = with_version(sub.add_parser("build", help="build the guest image unless cached"))
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
                    "(default: tests/zfs)."))
    test.add_argument("--out", metavar="DIR", type=Path, help="where junit.xml goes")
    test.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST ARGS")
    test.set_defaults(handler=_lab_test)

    shell = with_version(sub.add_parser("shell", help="an interactive root shell in a guest"))
    shell.set_defaults(handler=_lab_shell)


def _lab_build(args: argparse.Namespace) -> int:
    from . import lab

    image = lab.build(args.zfs, force=args.force)
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
    result = lab.test(args.pytest_args, version=args.zfs, out_dir=args.out, config=config)
    return result.returncode


def _lab_shell(args: argparse.Namespace) -> int:
    from . import lab

    return lab.shell(version=args.zfs).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="encroot",
        description="Life-cycle tooling for OpenZFS native encryption.",
    )
    parser.add_argument("--version", action="version",
                        version=f"encroot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    _add_lab(commands)
    return parser


def _fail(message: str, status: int) -> int:
    print(f"encroot: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
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
