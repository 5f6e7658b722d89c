"""A migration with a side on another host: the request's rules, the owner on another host
(``--take-over``), where each command runs, and the plan's text."""

from __future__ import annotations

from dataclasses import replace

import pytest

from encroot.cli.migrate import plan_lines
from encroot.errors import InputError, MigrateRefused
from encroot.migrate import MigrateRequest, plan_phase
from encroot.migrate.run import refuse_held
from encroot.names import DatasetName, PoolName
from encroot.owned import MigratePhase, Owner

from .test_migrate_plan import destination_side, source_side, state


def request(**extra: object) -> MigrateRequest:
    return MigrateRequest(DatasetName("src"), PoolName("dst"), **extra)  # type: ignore[arg-type]


def test_the_same_pool_name_on_two_hosts_is_two_pools() -> None:
    MigrateRequest(DatasetName("tank"), PoolName("tank"), destination_host="backup@newhost")
    with pytest.raises(InputError, match="must be another pool"):
        MigrateRequest(DatasetName("tank"), PoolName("tank"))


@pytest.mark.parametrize("extra", [{"verify_mount": True}, {"root_data": "copy"}])
def test_file_reading_options_need_both_pools_here(extra: dict[str, object]) -> None:
    with pytest.raises(InputError, match="needs both on this host"):
        request(source_host="oldhost", **extra)
    request(**extra)


def test_a_remote_pool_without_the_encryption_feature_names_host_and_pool() -> None:
    wanted = request(destination_host="backup@newhost", phase="initial")
    plan = plan_phase(wanted, state(source_side("s1"), destination_side(),
                                    destination_pool={"feature@encryption": "disabled"}),
                      "initial", "s2")
    texts = [r.text() for r in plan.refusals]
    assert any("feature@encryption is not enabled on dst on host backup@newhost" in t
               for t in texts)


def _marked(owner: Owner) -> object:
    base = state(source_side("s1"), destination_side())
    return replace(base, phase_marker=MigratePhase(source="src", phase="initial", owner=owner))


def test_an_owner_on_another_host_is_refused_unless_taken_over() -> None:
    elsewhere = Owner(host="f00dfeed", boot_id="b", pid=42, start="7")
    held = _marked(elsewhere)
    wanted = request(destination_host="backup@newhost")
    with pytest.raises(MigrateRefused) as caught:
        refuse_held(wanted, held, None)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "cannot be checked from this host" in message
    assert "--take-over f00dfeed" in message and "on host backup@newhost" in message
    refuse_held(wanted, held, "f00dfeed")  # type: ignore[arg-type]


def test_a_dead_owner_of_this_host_needs_no_take_over() -> None:
    me = Owner.current()
    dead = Owner(host=me.host, boot_id=me.boot_id, pid=me.pid, start="0")
    refuse_held(request(), _marked(dead), None)  # type: ignore[arg-type]


def test_plan_text_says_where_commands_run() -> None:
    wanted = request(source_host="oldhost", phase="initial")
    plan = plan_phase(wanted, state(source_side("s1"), destination_side()), "initial", "s2")
    lines = plan_lines(plan, wanted)
    assert lines[1].startswith("  hosts: SRC src on oldhost, DST dst on this host")
