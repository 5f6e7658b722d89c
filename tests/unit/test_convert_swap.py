"""The swap's state machine (pure): from every state an interruption can leave, the one
step that moves it forward; the old tree is never destroyed before the new one is in place."""

from __future__ import annotations

import os

import pytest

from encroot.convert import ConvertRequest, ConvertState, Node, Tree
from encroot.convert.swap import next_action, refuse_live_owners
from encroot.errors import ConvertRefused, OwnerAlive
from encroot.names import DatasetName
from encroot.owned import ConvertKept, ConvertPhase, ConvertReplaced, ConvertVerified, Owner
from encroot.owned import dumps as marker_text
from encroot.owned.owner import process_start
from encroot.zfs import ZfsCommands

REQUEST = ConvertRequest("encrypt", DatasetName("tank/my data"))
TEMP, ASIDE = REQUEST.temp, REQUEST.old_aside
ME = Owner.current()
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))
PHASE = ConvertPhase(target="tank/my data", operation="encrypt", phase="cutover")
VERIFIED = ConvertVerified(target="tank/my data", operation="encrypt", snapshot="s")
REPLACED = ConvertReplaced(target="tank/my data", operation="encrypt")


def top(name: str, mounted: str = "no", **markers: object) -> Tree:
    values = {"type": "filesystem", "canmount": "on", "mountpoint": "/" + name,
              "mounted": mounted, "keystatus": "available"}
    sources = {}
    for prop, marker in markers.items():
        prop_name = "encroot:convert-replaced" if prop == "replaced" else "encroot:convert"
        values[prop_name] = marker_text(marker)  # type: ignore[arg-type]
        sources[prop_name] = "local"
    return Tree(name, {name: Node(name, values, sources=sources)})


def step(old: Tree | None = None, new: Tree | None = None, aside: Tree | None = None,
         undo: bool = False) -> str | None:
    state = ConvertState(old or Tree("tank/my data"), new or Tree(TEMP), aside or Tree(""))
    move = next_action(REQUEST, state, undo=undo, owner=ME, commands=ZfsCommands())
    return None if move is None else move.description


def test_verified_not_swapped_rolls_forward_when_the_old_tree_is_unmounted() -> None:
    text = step(top("tank/my data"), top(TEMP, marker=VERIFIED))
    assert text == f"swap in verified {TEMP}: move tank/my data aside to {ASIDE}"


def test_verified_but_mounted_again_goes_back_to_a_phase() -> None:
    text = step(top("tank/my data", mounted="yes"), top(TEMP, marker=VERIFIED))
    assert text is not None and "run cutover again" in text


def test_between_the_two_renames() -> None:
    assert step(None, top(TEMP, marker=VERIFIED), top(ASIDE, replaced=REPLACED)) == \
        f"rename verified {TEMP} to tank/my data"


def test_old_moved_aside_without_a_verified_new_tree_is_restored() -> None:
    assert step(None, top(TEMP, marker=PHASE), top(ASIDE, replaced=REPLACED)) == \
        f"restore the old tree: rename {ASIDE} to tank/my data"


def test_swapped_then_finished_then_cleared() -> None:
    text = step(top("tank/my data", marker=VERIFIED), None, top(ASIDE, replaced=REPLACED))
    assert text is not None and text.startswith("finish:") and "destroy the old tree" in text
    kept = ConvertKept(target="tank/my data", operation="encrypt")
    assert step(top("tank/my data", marker=VERIFIED), None, top("tank/kept", replaced=kept)) \
        == "clear encroot:convert on tank/my data"


def test_an_unverified_new_tree_is_kept_for_the_next_phase_or_undone() -> None:
    assert step(top("tank/my data", mounted="yes"),
                top(TEMP, marker=ConvertPhase(target="tank/my data", operation="encrypt",
                                              phase="initial"))) is None
    assert step(top("tank/my data", mounted="yes"), top(TEMP, marker=PHASE), undo=True) == \
        f"undo: destroy the unfinished {TEMP}"


def test_an_interrupted_cutover_mounts_the_old_tree_first() -> None:
    text = step(top("tank/my data"), top(TEMP, marker=PHASE), undo=True)
    assert text is not None and text.startswith("an interrupted cutover left tank/my data")


def test_a_new_tree_that_is_not_ours_is_refused() -> None:
    with pytest.raises(ConvertRefused):
        step(top("tank/my data"), top(TEMP), undo=True)


def test_a_live_owner_is_refused() -> None:
    running = ConvertPhase(target="tank/my data", operation="encrypt", phase="initial",
                           owner=LIVE)
    state = ConvertState(top("tank/my data"), top(TEMP, marker=running))
    with pytest.raises(OwnerAlive):
        refuse_live_owners(REQUEST, state)


def test_nothing_to_do() -> None:
    assert step(top("tank/my data", mounted="yes")) is None


def test_the_finish_move_is_never_built_from_a_state_without_its_details() -> None:
    light = ConvertState(top("tank/my data", marker=VERIFIED), Tree(TEMP),
                         top(ASIDE, replaced=REPLACED), details=False)
    move = next_action(REQUEST, light, undo=False, owner=ME, commands=ZfsCommands())
    assert move is not None and move.needs_details and move.steps == ()
    full = ConvertState(light.old, light.new, light.aside)
    move = next_action(REQUEST, full, undo=False, owner=ME, commands=ZfsCommands())
    assert move is not None and not move.needs_details and move.steps


def test_the_other_moves_need_no_details() -> None:
    light = ConvertState(top("tank/my data"), top(TEMP, marker=VERIFIED), details=False)
    move = next_action(REQUEST, light, undo=False, owner=ME, commands=ZfsCommands())
    assert move is not None and not move.needs_details and move.steps
