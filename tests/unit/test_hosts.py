"""``parse_location``: scp/syncoid-style remote names, IPv6 brackets, the ``./`` escape."""

from __future__ import annotations

import pytest

from encroot.errors import InputError
from encroot.hosts import Location, parse_location


@pytest.mark.parametrize(("text", "expected"), [
    ("tank", Location("tank")),
    ("tank/a b", Location("tank/a b")),
    ("newhost:newtank", Location("newtank", "newhost")),
    ("backup@newhost:newtank", Location("newtank", "newhost", "backup")),
    ("oldhost:tank/data/x y", Location("tank/data/x y", "oldhost")),
    ("lab-remote:pool", Location("pool", "lab-remote")),
    ("10.0.0.2:tank", Location("tank", "10.0.0.2")),
    ("[::1]:tank", Location("tank", "::1")),
    ("root@[fe80::1%eth0]:tank/a", Location("tank/a", "fe80::1%eth0", "root")),
    ("host:tank/a:b", Location("tank/a:b", "host")),
    ("./tank/a:b", Location("tank/a:b")),
    ("./host:tank", Location("host:tank")),
])
def test_parses(text: str, expected: Location) -> None:
    assert parse_location(text) == expected


@pytest.mark.parametrize(("text", "rule"), [
    ("tank/a:b", "not a host name"),
    (":tank", "host before ':' is empty"),
    ("host:", "no pool or dataset"),
    ("-oProxyCommand=x:tank", "not a host name"),
    ("@host:tank", "not a login name"),
    ("-u@host:tank", "not a login name"),
    ("[::1:tank", "without ']'"),
    ("[::1]tank", "must be followed by ':'"),
    ("[nohost]:tank", "not an IPv6 address"),
    ("./", "nothing follows"),
])
def test_refuses_with_one_line(text: str, rule: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_location(text)
    message = str(caught.value)
    assert rule in message and repr(text) in message and "\n" not in message
    assert "./NAME" in message


def test_labels_and_destination() -> None:
    location = parse_location("backup@[fe80::1%eth0]:tank")
    assert location.destination == "backup@fe80::1%eth0"
    assert location.host_label == "backup@[fe80::1%eth0]"
    assert str(location) == "backup@[fe80::1%eth0]:tank"
    assert location.remote and not parse_location("tank").remote
    assert str(parse_location("tank")) == "tank"
    with pytest.raises(ValueError, match="local"):
        _ = parse_location("tank").destination
