"""The ``encroot`` command: a thin layer over the library's public API.

One module per command (``receive``, ``rotate`` for change-key/recover/get,
``doctor`` for doctor/status, ``migrate``, ``convert`` for encrypt/reencrypt/
decrypt, ``stream``, ``lab``), the plain ``zfs`` hand-over in ``dropin``, and
what they share in ``common`` (exit statuses, output), ``keyfiles`` and
``progress``, and for remote pools ``remote`` (``--ssh-option``, one ``Zfs``
per host).  Each subcommand parses its options, calls one library
function, prints the result, and maps errors to exit statuses (``Exit``):
0 success, 1 a failed operation, 2 bad input (usage, names, keys), 3 the lab
could not build or run, 4 a remote host could not be used (``RemoteError``:
unreachable, authentication, host key, no or too old zfs, a lost connection).
An error is one line on stderr that names the input or the ZFS message.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .._lazy import lazy_attributes
from ..errors import EncrootError, InputError, LabError, RemoteError, ZfsError, ZfsUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from .common import Exit

__all__ = ["Exit", "build_parser", "main"]

# Each command's words and the module (of this package) whose add_NAME_commands
# adds its parser.  Only the invoked command's module is imported: under the
# lab's emulation importing every operation cost each `encroot` start seconds.
_COMMANDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("receive", "recv"), "receive"),
    (("change-key", "recover", "get"), "rotate"),
    (("doctor", "status"), "doctor"),
    (("migrate",), "migrate"),
    (("encrypt", "reencrypt", "decrypt"), "convert"),
    (("stream",), "stream"),
    (("lab",), "lab"),
)


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is no option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``encroot`` parser: every command, or with ``argv`` only the one it names.

    An unknown word, or none, gets every command, so that usage errors and
    ``--help`` list them all.
    """
    import importlib

    from .. import __version__
    from .common import Parser

    parser = Parser(
        prog="encroot",
        description="Life-cycle tooling for OpenZFS native encryption.",
    )
    parser.add_argument("--version", action="version",
                        version=f"encroot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)
    word = None if argv is None else _command_word(argv)
    known = any(word in words for words, _ in _COMMANDS)
    if argv is not None and word is None and "--version" in argv:
        return parser  # `encroot --version` needs no command's parser
    for words, module in _COMMANDS:
        if not known or word in words:
            adder = getattr(importlib.import_module(f"{__name__}.{module}"),
                            f"add_{module}_commands")
            adder(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (the console script exits with it).

    ``encroot receive`` and ``encroot change-key`` asking for nothing encroot
    adds become ``zfs receive`` / ``zfs change-key`` with the same arguments
    (``dropin``): this process is replaced and never returns here.  That path
    imports as little as it can: its start-up is its whole cost beside zfs.
    """
    from .dropin import drop_in, hand_over

    arguments = list(sys.argv[1:] if argv is None else argv)
    handover = drop_in(arguments)
    if handover is not None:
        return _guarded(lambda: hand_over(None, handover))
    from .remote import join_ssh_options

    arguments = join_ssh_options(arguments)
    args = build_parser(arguments).parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return _guarded(lambda: handler(args))


def _guarded(run: Callable[[], int]) -> int:
    """Run one command; map encroot's errors to one line on stderr and an exit status."""
    try:
        return int(run())
    except (ZfsError, ZfsUnavailable, EncrootError, KeyboardInterrupt) as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    """The one line on stderr for ``exc``; its exit status."""
    from .common import Exit, fail

    if isinstance(exc, KeyboardInterrupt):
        return fail("interrupted", Exit.INTERRUPTED)
    if isinstance(exc, InputError):
        return fail(str(exc), Exit.USAGE)
    if isinstance(exc, LabError):
        return fail(str(exc), Exit.LAB)
    if isinstance(exc, RemoteError):
        return fail(str(exc), Exit.REMOTE)
    return fail(str(exc), Exit.FAILED)


# Exit is imported on first use: the pass-through path never needs it.
__getattr__ = lazy_attributes(__name__, {"Exit": ".common"}, globals())
