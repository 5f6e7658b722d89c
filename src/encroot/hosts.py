"""Where a pool or dataset lives: this host, or ``[USER@]HOST:POOL[/PATH]`` over ssh.

The form is scp's and syncoid's: everything before the first ``:`` is the
host (with an optional ``USER@``), everything after it the dataset.  ZFS
names may themselves contain ``:`` (``tank/a:b`` is a legal dataset), so:

- a text without ``:`` is a local dataset;
- ``./NAME`` is always the local dataset NAME, whatever it contains (the
  escape for a local name with a ``:``, as ``./file:name`` is for scp);
- an IPv6 address goes in brackets: ``[fe80::1%eth0]:tank``,
  ``root@[::1]:tank/data``;
- otherwise the part before the first ``:`` must be a host name (letters,
  digits, ``.``, ``-``, ``_``, not starting with ``-``) or an ssh_config
  alias of that form, else the input is refused with the rule and the
  ``./`` escape named (``tank/a:b`` is refused, ``./tank/a:b`` is local).

A host never starts with ``-``: it ends up as an ssh argument, where it
would be read as an option.  Parsing is pure; nothing here connects.
"""

from __future__ import annotations

import re

from .errors import InputError
from .records import record

__all__ = ["LOCATION_RULE", "Location", "parse_location"]

LOCATION_RULE = ("[USER@]HOST:POOL[/PATH] (IPv6 as [ADDR]:POOL), or a local name; "
                 "write ./NAME for a local name that contains ':'")

_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9._-]+)?")


@record(frozen=True)
class Location:
    """A dataset and the host it is on (``host`` None: this host).

    Attributes:
        dataset: the pool or dataset name (not validated here: the operation
            that takes it checks it as a ``DatasetName`` or ``PoolName``).
        host: a host name, ssh_config alias or IP address (IPv6 without
            brackets); None for a local dataset.
        user: the login name, when given.
    """

    dataset: str
    host: str | None = None
    user: str | None = None

    @property
    def remote(self) -> bool:
        return self.host is not None

    @property
    def destination(self) -> str:
        """What ssh is given as its destination: ``USER@HOST`` or ``HOST`` (raises for a
        local location)."""
        if self.host is None:
            raise InputError(f"{self.dataset} is local: it has no ssh destination")
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def host_label(self) -> str:
        """The host as the user wrote it (``USER@HOST``, ``[ADDR]``), for messages."""
        if self.host is None:
            return "this host"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" if self.user else host

    def __str__(self) -> str:
        return self.dataset if self.host is None else f"{self.host_label}:{self.dataset}"


def _refuse(text: str, why: str) -> InputError:
    return InputError(f"{text!r}: {why}; use {LOCATION_RULE}", subject=text)


def parse_location(text: str) -> Location:
    """Parse ``[USER@]HOST:POOL[/PATH]``, ``[USER@][ADDR]:POOL[/PATH]``, ``./NAME`` or NAME.

    Examples::

        parse_location("tank")                  -> Location("tank")
        parse_location("backup@newhost:newtank") -> Location("newtank", "newhost", "backup")
        parse_location("[fe80::1%eth0]:tank/a")  -> Location("tank/a", "fe80::1%eth0")
        parse_location("./tank/a:b")             -> Location("tank/a:b")

    Raises:
        InputError: one line naming the input and the rule it broke (an empty
            host, user or dataset; a host that is no host name; unclosed brackets).
    """
    if text.startswith("./"):
        if not text[2:]:
            raise _refuse(text, "nothing follows ./")
        return Location(text[2:])
    if ":" not in text:
        return Location(text)
    user: str | None = None
    rest = text
    at = text.find("@")
    bracket = text.find("[")
    colon = text.find(":")
    if at != -1 and at < colon and (bracket == -1 or at < bracket):
        user, rest = text[:at], text[at + 1:]
        if not _USER.fullmatch(user):
            raise _refuse(text, f"user {user!r} is not a login name")
    if rest.startswith("["):
        close = rest.find("]")
        if close == -1:
            raise _refuse(text, "'[' without ']'")
        host, after = rest[1:close], rest[close + 1:]
        if not _IPV6.fullmatch(host):
            raise _refuse(text, f"{host!r} in brackets is not an IPv6 address")
        if not after.startswith(":"):
            raise _refuse(text, "']' must be followed by ':' and the dataset")
        dataset = after[1:]
    else:
        host, _, dataset = rest.partition(":")
        if not host:
            raise _refuse(text, "the host before ':' is empty")
        if not _HOST.fullmatch(host):
            raise _refuse(text, f"{host!r} before ':' is not a host name (a local dataset "
                                "whose name has ':' is written ./NAME)")
    if not dataset:
        raise _refuse(text, "no pool or dataset after ':'")
    return Location(dataset, host, user)
