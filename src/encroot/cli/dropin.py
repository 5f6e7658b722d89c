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
  ``--json``, ``--help``;
- change-key: ``-o NS:PROP=VALUE`` (a user property), ``--key-file``,
  ``--key-dir``, ``--key-stdin``, ``--current-key-file``, ``--strategy``,
  ``--json``, ``--help``, ``-n``, ``-v``, and more than one dataset (a batch).

Long options may be abbreviated as argparse allows.  One addition anywhere
hands the whole command line to encroot's own parser.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from ..errors import InputError, ZfsError
from ..names import DatasetName
from ..zfs import Zfs

__all__ = ["HandOver", "Scan", "drop_in", "hand_over", "scan"]

# zfs_main.c, zfs_do_receive() and zfs_do_change_key(): their getopt option strings.
RECEIVE_OPTIONS = ":o:x:dehMnuvFsAc"
CHANGE_KEY_OPTIONS = "lio:"

RECEIVE_ADDITIONS = ("--allow-encryption-change", "--keep-old", "--recover", "--json", "--help")
CHANGE_KEY_ADDITIONS = ("--key-file", "--key-dir", "--key-stdin", "--current-key-file",
                        "--strategy", "--json", "--help")
CHANGE_KEY_SHORT_ADDITIONS = "nv"  # -n (plan) and -v (steps); zfs change-key has neither


@dataclass(frozen=True)
class Scan:
    """What a command line asks for, read as zfs's getopt reads it.

    Attributes:
        addition: the first argument that asks for something only encroot
            does (``--allow-encryption-change``, ``-o ns:prop=v``, ...), or
            "" when zfs alone can do everything asked.
        operands: the non-option arguments, in order (datasets, snapshots).
    """

    addition: str
    operands: tuple[str, ...]


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
    takes_argument = {char for char, after in zip(optstring, optstring[1:] + " ", strict=True)
                      if char != ":" and after == ":"}
    stop_at_operand = "POSIXLY_CORRECT" in os.environ or optstring.startswith("+")
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands += args[index:]
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            if stop_at_operand:
                operands += args[index:]
                break
            continue
        if arg.startswith("--"):
            if _long_addition(arg, additions):
                return Scan(arg, tuple(operands))
            continue  # zfs's getopt takes it for '-' and refuses it
        for position, char in enumerate(arg[1:], start=2):
            if char in short_additions:
                return Scan(arg, tuple(operands))
            if char not in takes_argument:
                continue
            value = arg[position:]
            if not value and index < len(args):
                value = args[index]
                index += 1
            if user_properties and char == "o" and ":" in value.partition("=")[0]:
                return Scan(f"-o {value}", tuple(operands))
            break
    return Scan("", tuple(operands))


@dataclass(frozen=True)
class HandOver:
    """A command line that goes to zfs whole: ``zfs SUBCOMMAND ARGS...``."""

    subcommand: str
    args: tuple[str, ...]
    operands: tuple[str, ...]


def drop_in(argv: Sequence[str]) -> HandOver | None:
    """The hand-over for ``encroot receive|recv|change-key ...`` asking nothing of encroot.

    ``argv`` is encroot's command line without the program name.  None means
    encroot's own parser takes it (another subcommand, or an addition asked for).
    """
    if not argv or argv[0] not in ("receive", "recv", "change-key"):
        return None
    subcommand, args = argv[0], list(argv[1:])
    if subcommand == "change-key":
        found = scan(args, CHANGE_KEY_OPTIONS, additions=CHANGE_KEY_ADDITIONS,
                     short_additions=CHANGE_KEY_SHORT_ADDITIONS, user_properties=True)
        if found.addition or len(found.operands) > 1:  # several datasets: encroot's batch
            return None
    else:
        found = scan(args, RECEIVE_OPTIONS, additions=RECEIVE_ADDITIONS)
        if found.addition:
            return None
    return HandOver(subcommand, tuple(args), found.operands)


def hand_over(zfs: Zfs, handover: HandOver) -> NoReturn:
    """Become zfs for ``handover``; a change-key first finishes a pending rotation.

    ``encroot change-key`` promises that the next change-key on a dataset
    finishes an interrupted rotation (docs/design.md); that costs one
    ``zfs get`` of ``encroot:rotation`` before the exec, and recovery only
    when the marker is set.

    Raises:
        PendingRotation, RotationRefused: a pending rotation could not be
            finished (nothing was handed over).
        ZfsUnavailable: zfs cannot be executed.
    """
    if handover.subcommand == "change-key" and len(handover.operands) == 1:
        _finish_pending_rotation(zfs, handover.operands[0])
    zfs.exec_replacing(handover.subcommand, handover.args)


def _finish_pending_rotation(zfs: Zfs, operand: str) -> None:
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
