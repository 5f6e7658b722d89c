"""What commands that take remote pools share: ``--ssh-option``, locations, one ``Zfs`` per host.

A pool or dataset argument may be ``[USER@]HOST:POOL[/PATH]`` (``encroot.hosts``);
each host gets one ``Zfs`` over ssh, and every host of a run shares one
``SshMasters`` (one master connection per host, closed when the run ends).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ..errors import InputError
from ..hosts import LOCATION_RULE, Location, parse_location
from ..zfs import Zfs
from ..zfs.masters import SshMasters

__all__ = ["LOCATION_HELP", "SSH_OPTION", "add_ssh_options", "join_ssh_options", "one_host",
           "refuse_local_ssh_options", "zfs_for"]

SSH_OPTION = "--ssh-option"
LOCATION_HELP = (f"A pool or dataset on another host is written {LOCATION_RULE}. encroot "
                 "runs zfs and zpool there over the system ssh (your ~/.ssh/config, agent "
                 "and known hosts; BatchMode, one multiplexed connection per host); the "
                 "remote host needs only zfs, zpool and a POSIX shell. Exit status 4 when "
                 "a remote host cannot be used (unreachable, authentication, host key, no "
                 "or too old zfs there).")


def add_ssh_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(SSH_OPTION, dest="ssh_options", action="append", default=[],
                        metavar="ARG",
                        help="one more argument for every ssh encroot starts, in order (e.g. "
                             "--ssh-option -F --ssh-option FILE, --ssh-option -oPort=2222); "
                             "host-key checking stays as configured")


def join_ssh_options(arguments: Sequence[str]) -> list[str]:
    """``--ssh-option -F`` as ``--ssh-option=-F``: argparse would read a value that starts
    with ``-`` as an option of its own."""
    joined: list[str] = []
    words = iter(arguments)
    for word in words:
        if word == SSH_OPTION:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        elif word == "--":
            joined += [word, *words]
        else:
            joined.append(word)
    return joined


def zfs_for(location: Location, masters: SshMasters, *,
            log: Callable[[str], None] | None = None) -> Zfs:
    """The command layer of the host ``location`` is on."""
    if not location.remote:
        return Zfs(log=log)
    return Zfs(log=log, masters=masters,
               remote=masters.target(location.destination, location.host_label))


def locations(texts: Sequence[str]) -> list[Location]:
    return [parse_location(text) for text in texts]


def one_host(texts: Sequence[str], rule: str) -> tuple[Location, list[str]]:
    """The host every one of ``texts`` is on (a local location when none is given) and
    their dataset names, without the host.

    ``rule`` ends the refusal: what to do instead (``audit one host per run``).

    Raises:
        InputError: ``texts`` are on several hosts, or one is no location.
    """
    found = locations(texts)
    if len({(location.host, location.user) for location in found}) > 1:
        raise InputError(f"{' '.join(texts)}: on several hosts; {rule}", subject=texts[0])
    where = found[0] if found else Location("")
    return where, [location.dataset for location in found]


def refuse_local_ssh_options(ssh_options: Sequence[str], where: Location) -> None:
    """``--ssh-option`` for a command that runs on this host is a mistake, not a no-op.

    Raises:
        InputError: ssh options were given and ``where`` is this host.
    """
    if ssh_options and not where.remote:
        raise InputError(f"--ssh-option: {where.dataset or 'the target'} is on this host "
                         "(a remote one is [USER@]HOST:DATASET)", subject="--ssh-option")
