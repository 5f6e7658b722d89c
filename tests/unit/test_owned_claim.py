"""Ownership taken by compare-and-set (``encroot.owned.claim``): the channel program run by a
real Lua 5.2 against a simulated ``zfs`` table, and ``claim_marker``'s verdicts."""

from __future__ import annotations

import json
import os

import pytest

from encroot.errors import EncrootError, OwnerAlive
from encroot.owned import MIGRATE_MARKER, MigratePhase, claim_marker, dumps
from encroot.owned.claim import claim_program
from encroot.owned.owner import Owner, process_start
from encroot.zfs import Command
from encroot.zfs.testing import Responder

from .fakes import make_zfs
from .test_rotate_lua import FakeZfs, run, to_python

ME = Owner.current()
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))
DEAD = Owner(host=ME.host, boot_id="another boot", pid=1, start="1")
OURS = dumps(MigratePhase(source="src", phase="initial", owner=ME))


def marker_of(owner: Owner) -> str:
    return dumps(MigratePhase(source="src", phase="initial", owner=owner))


@pytest.mark.parametrize(("before", "expected", "claimed"), [
    (None, None, True),  # nothing there, nothing expected
    ("theirs", None, False),  # claimed by another since the read
    ("theirs", "theirs", True),  # still the dead owner's marker the decision was made on
    ("theirs", "other", False),
])
def test_the_program_sets_only_over_what_was_read(before: str | None, expected: str | None,
                                                   claimed: bool) -> None:
    fake = FakeZfs({"dst": {} if before is None else {MIGRATE_MARKER: (before, "dst")}})
    got = to_python(run(claim_program("dst", MIGRATE_MARKER, expected, OURS), fake))
    assert got["claimed"] is claimed
    assert fake.values("dst").get(MIGRATE_MARKER) == (OURS if claimed else before)
    if not claimed:
        assert got.get("current") == before


def test_an_inherited_or_received_value_is_not_a_marker_of_this_dataset() -> None:
    fake = FakeZfs({"dst/a": {MIGRATE_MARKER: ("theirs", "dst")}})
    got = to_python(run(claim_program("dst/a", MIGRATE_MARKER, None, OURS), fake))
    assert got["claimed"] is True and fake.values("dst/a")[MIGRATE_MARKER] == OURS


def answering(current: str | None) -> Responder:
    def respond(command: Command) -> tuple[int, str, str]:
        document: dict[str, object] = {"claimed": current is None}
        if current is not None:
            document["current"] = current
        return 0, json.dumps({"return": document}), ""
    return respond


def test_claim_marker_runs_one_program_with_the_marker_on_stdin() -> None:
    zfs, runner = make_zfs(answering(None))
    claim_marker(zfs, "dst", MIGRATE_MARKER, "-", OURS)
    (command, script), = runner.calls
    assert command.argv == ("/sbin/zfs", "program", "-j", "dst", "-") and command.mutates
    assert script is not None and b"local expected, value = nil," in script


def test_a_lost_claim_names_a_live_winner_or_asks_to_run_again() -> None:
    zfs, _ = make_zfs(answering(marker_of(LIVE)))
    with pytest.raises(OwnerAlive, match=f"dst is held by encroot pid {LIVE.pid}"):
        claim_marker(zfs, "dst", MIGRATE_MARKER, None, OURS)
    zfs, _ = make_zfs(answering(marker_of(DEAD)))
    with pytest.raises(EncrootError, match="changed while encroot was planning"):
        claim_marker(zfs, "dst", MIGRATE_MARKER, None, OURS)
