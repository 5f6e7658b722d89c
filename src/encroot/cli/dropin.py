"""``encroot receive`` and ``encroot change-key`` as drop-ins: zfs itself, exec'd.

When the arguments ask for nothing encroot adds, encroot replaces itself with
``zfs receive ARGS...`` / ``zfs change-key ARGS...`` (``Zfs.exec_replacing``),
the user's argument list unchanged.  Options, bundled flags, prompts, key
reading, messages, usage text and exit statuses are then zfs's own on every
OpenZFS version, because zfs is what runs.

Deciding "ours or zfs's" cannot use argparse, which would reject zfs's syntax
first; ``scan`` reads the arguments the way zfs's ``getopt`` does (GNU
permutation, bundled flags, glued or separate option arguments, ``--`` ends
the options) and looks for encroot's additions:

- receive: ``--allow-encryption-change``, ``--keep-old``, ``--recover``,
  ``--take-over``, ``--json``, ``--help``;
- change-key: ``-o NS:PROP=VALUE`` (a user property), ``--key-file``,
  ``--key-dir``, ``--key-stdin``, ``--current-key-file``, ``--strategy``,
  ``--json``, ``--help``, ``-n``, ``-v``, and more than one dataset (a batch).

Long options may be abbreviated as argparse allows.  One addition anywhere
hands the whole command line to encroot's own parser.

A receive whose target, or a change-key whose one dataset, is on another
host (``[USER@]HOST:TARGET``, ``encroot.hosts``) is handed to that host's
zfs: after one ``zfs version`` over ssh (an unusable host is one line naming
it, exit 4), encroot becomes ``ssh ... -- HOST 'PATH=... zfs receive ARGS'``
(``Zfs.exec_replacing``), the operand without its host.  Its stdin is ssh's,
carried to the remote zfs: a receive's stream, a change-key's piped key.  A
change-key at a terminal gets ``ssh -t``, so the remote zfs prompts on a
terminal as a local one would (echo off, the new key asked twice); its
pending-rotation check runs on that host first.  ``--ssh-option ARG`` is
taken out of the arguments for that ssh; it is no addition.  An operand that
does not parse as a location (``tank/a:b``) is zfs's to judge; ``./NAME`` is
the local NAME (the escape for names with ``:``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import InputError, ZfsError

# A local pass-through imports nothing more of encroot than errors and
# ``encroot.zfs.become``: its start-up is all it costs beside zfs itself.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from ..hosts import Location
    from ..zfs import Zfs

__all__ = ["HandOver", "Scan", "drop_in", "hand_over", "scan"]

# zfs_main.c, zfs_do_receive() and zfs_do_change_key(): their getopt option strings.
RECEIVE_OPTIONS = ":o:x:dehMnuvFsAc"
CHANGE_KEY_OPTIONS = "lio:"

RECEIVE_ADDITIONS = ("--allow-encryption-change", "--keep-old", "--recover", "--take-over",
                     "--json", "--help")
SSH_OPTION = "--ssh-option"  # taken out for the ssh of a remote receive (cli.remote's)
CHANGE_KEY_ADDITIONS = ("--key-file", "--key-dir", "--key-stdin", "--current-key-file",
                        "--strategy", "--json", "--help")
CHANGE_KEY_SHORT_ADDITIONS = "nv"  # -n (plan) and -v (steps); zfs change-key has neither


class _Record:
    """A value record without ``dataclasses``: equal by its slots, printed with them.

    ``dataclasses`` imports ``inspect`` and ``re``, 0.2 s of a pass-through's
    start-up in the lab's emulated guest, where plain zfs starts in 0.1 s.
    """

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Record) and type(other) is type(self) \
            and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({shown})"


class Scan(_Record):
    """What a command line asks for, read as zfs's getopt reads it.

    Attributes:
        addition: the first argument that asks for something only encroot
            does (``--allow-encryption-change``, ``-o ns:prop=v``, ...), or
            "" when zfs alone can do everything asked.
        operands: the non-option arguments, in order (datasets, snapshots).
        positions: where each operand is in the arguments (an index each).
    """

    __slots__ = ("addition", "operands", "positions")

    def __init__(self, addition: str, operands: tuple[str, ...],
                 positions: tuple[int, ...] = ()) -> None:
        self.addition = addition
        self.operands = operands
        self.positions = positions


def _long_addition(arg: str, additions: Sequence[str]) -> bool:
    """``--name`` or ``--name=value``, where name is one of ``additions`` or a prefix of one."""
    name = arg.partition("=")[0]
    return len(name) > 2 and any(option.startswith(name) for option in additions)


def scan(args: Sequence[str], optstring: str, *, additions: Sequence[str] = (),
         short_additions: str = "", user_properties: bool = False) -> Scan:
    """Read ``args`` as GNU getopt(3) with ``optstring`` does; find encroot's additions.

    ``user_properties``: an ``-o NAME=VALUE`` whose NAME holds ``:`` is an
    addition (``zfs change-key`` before user-property support refuses it).
    ``POSIXLY_CORRECT`` in the environment stops option parsing at the first
    operand, as it does in glibc's getopt.
    """
    takes_argument = _taking_argument(optstring)
    stop_at_operand = "POSIXLY_CORRECT" in os.environ or optstring.startswith("+")
    operands: list[str] = []
    positions: list[int] = []

    def found(addition: str = "") -> Scan:
        return Scan(addition, tuple(operands), tuple(positions))

    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands += args[index:]
            positions += range(index, len(args))
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            positions.append(index - 1)
            if stop_at_operand:
                operands += args[index:]
                positions += range(index, len(args))
                break
            continue
        if arg.startswith("--"):
            if _long_addition(arg, additions):
                return found(arg)
            continue  # zfs's getopt takes it for '-' and refuses it
        for position, char in enumerate(arg[1:], start=2):
            if char in short_additions:
                return found(arg)
            if char not in takes_argument:
                continue
            value = arg[position:]
            if not value and index < len(args):
                value = args[index]
                index += 1
            if user_properties and char == "o" and ":" in value.partition("=")[0]:
                return found(f"-o {value}")
            break
    return found()


def _taking_argument(optstring: str) -> set[str]:
    return {char for char, after in zip(optstring, optstring[1:] + " ", strict=True)
            if char != ":" and after == ":"}


def take_ssh_options(args: Sequence[str], optstring: str = RECEIVE_OPTIONS
                     ) -> tuple[list[str], list[str]]:
    """``args`` without ``--ssh-option ARG`` / ``--ssh-option=ARG`` (abbreviated as
    argparse allows), and those ARGs in order; read as getopt reads ``args``, so an
    option's value or an operand after ``--`` is never taken."""
    takes_argument = _taking_argument(optstring)
    stop_at_operand = "POSIXLY_CORRECT" in os.environ
    kept: list[str] = []
    options: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        name, equals, value = arg.partition("=")
        if arg == "--" or (stop_at_operand and not arg.startswith("-")):
            kept += args[index - 1:]
            break
        if len(name) > 3 and SSH_OPTION.startswith(name):
            if equals:
                options.append(value)
            elif index < len(args):
                options.append(args[index])
                index += 1
            continue
        kept.append(arg)
        if arg.startswith("-") and not arg.startswith("--"):
            for position, char in enumerate(arg[1:], start=2):
                if char in takes_argument:
                    if position == len(arg) and index < len(args):
                        kept.append(args[index])
                        index += 1
                    break
    return kept, options


class HandOver(_Record):
    """A command line that goes to zfs whole: ``zfs SUBCOMMAND ARGS...``.

    ``operands``: the datasets (or snapshots) the arguments name, as zfs is to
    see them (without a host, without the ``./`` escape).
    ``remote``: the host whose zfs it goes to (``args`` and ``operands`` then
    name the dataset without its host), reached with ``ssh_options``; None for
    this host.
    """

    __slots__ = ("args", "operands", "remote", "ssh_options", "subcommand")

    def __init__(self, subcommand: str, args: tuple[str, ...], operands: tuple[str, ...],
                 remote: Location | None = None, ssh_options: tuple[str, ...] = ()) -> None:
        self.subcommand = subcommand
        self.args = args
        self.operands = operands
        self.remote = remote
        self.ssh_options = ssh_options


def drop_in(argv: Sequence[str]) -> HandOver | None:
    """The hand-over for ``encroot receive|recv|change-key ...`` asking nothing of encroot.

    ``argv`` is encroot's command line without the program name.  None means
    encroot's own parser takes it (another subcommand, or an addition asked for).
    """
    if not argv or argv[0] not in ("receive", "recv", "change-key"):
        return None
    subcommand, args = argv[0], list(argv[1:])
    change_key = subcommand == "change-key"
    optstring = CHANGE_KEY_OPTIONS if change_key else RECEIVE_OPTIONS
    args, ssh_options = take_ssh_options(args, optstring)
    if change_key:
        found = scan(args, optstring, additions=CHANGE_KEY_ADDITIONS,
                     short_additions=CHANGE_KEY_SHORT_ADDITIONS, user_properties=True)
        if len(found.operands) > 1:
            return None  # several datasets: encroot's batch
    else:
        found = scan(args, optstring, additions=RECEIVE_ADDITIONS)
    if found.addition:
        return None
    location = _operand_location(found.operands)
    if ssh_options and (location is None or not location.remote):
        return None  # encroot's parser says that the operand is on this host
    if location is None:
        return HandOver(subcommand, tuple(args), found.operands)
    args[found.positions[0]] = location.dataset
    return HandOver(subcommand, tuple(args), (location.dataset,),
                    location if location.remote else None, tuple(ssh_options))


def _operand_location(operands: Sequence[str]) -> Location | None:
    """The target's location when it is ``HOST:TARGET`` or ``./NAME:...``; None when it
    is a plain local name, or no location at all (``tank/a:b``: zfs judges it)."""
    if len(operands) != 1 or ":" not in operands[0]:
        return None
    from ..hosts import parse_location

    try:
        return parse_location(operands[0])
    except InputError:
        return None


def hand_over(zfs: Zfs | None, handover: HandOver) -> NoReturn:
    """Become zfs for ``handover``; a change-key first finishes a pending rotation.

    With ``zfs`` None (the CLI) a local receive becomes zfs straight away
    (``encroot.zfs.become``), loading nothing else; anything else uses a
    default ``Zfs``.

    ``encroot change-key`` promises that the next change-key on a dataset
    finishes an interrupted rotation (docs/design.md); that costs one
    ``zfs get`` of ``encroot:rotation`` before the exec, and recovery only
    when the marker is set.

    A remote receive or change-key first runs ``zfs version`` there
    (``Zfs.connect``), with ``zfs``'s runner, then (change-key: after the
    ``encroot:rotation`` read and any recovery, there) becomes ssh running that
    host's zfs.  A change-key typed at a terminal gets one there (``ssh -t``):
    zfs prompts for the key as it does here, echo off, asked twice.

    Raises:
        PendingRotation, RotationRefused: a pending rotation could not be
            finished (nothing was handed over).
        RemoteError: the remote host cannot be used (nothing was handed over).
        ZfsUnavailable: zfs (or ssh) cannot be executed.
    """
    if zfs is None and handover.subcommand != "change-key" and handover.remote is None:
        from ..zfs.become import become, find_program

        become([find_program("zfs"), handover.subcommand, *handover.args])
    from ..zfs import Zfs

    zfs = Zfs() if zfs is None else zfs
    if handover.remote is not None:
        from ..zfs.ssh import SshTarget

        where = handover.remote
        zfs = Zfs(runner=zfs.runner, remote=SshTarget(where.destination, where.host_label,
                                                      handover.ssh_options))
        zfs.connect()
    if handover.subcommand == "change-key" and len(handover.operands) == 1:
        _finish_pending_rotation(zfs, handover.operands[0])
    at_terminal = handover.subcommand == "change-key" and handover.remote is not None \
        and os.isatty(0)
    zfs.exec_replacing(handover.subcommand, handover.args, terminal=at_terminal)


def _finish_pending_rotation(zfs: Zfs, operand: str) -> None:
    from ..names import DatasetName
    from ..owned import ROTATION_MARKER
    from ..rotate import RotationRefused, recover

    try:
        name = DatasetName(operand)
        table = zfs.get([name], [ROTATION_MARKER], use_json=False)
    except (InputError, ZfsError):
        return  # a bad name or a missing dataset: zfs says so in its own words
    marker = table[name].get(ROTATION_MARKER) if name in table else None
    if marker is None or marker.source != "local":
        return
    outcome = recover(zfs, name)
    if outcome.action == "in-progress":
        raise RotationRefused(f"{name}: a key rotation is running now ({outcome.evidence}); "
                              "try again when it is done")
