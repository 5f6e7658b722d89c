"""Planning a migration (pure): transfers, repairs, refusals, the cutover steps."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from encroot.cli import main
from encroot.cli.migrate import plan_lines
from encroot.cli.progress import TransferProgress
from encroot.errors import InputError, InvalidName
from encroot.migrate import MigrateRefused, MigrateRequest, MigrateState
from encroot.migrate.finish import expected_encryption_root, root_properties
from encroot.migrate.model import Node, Side, Snap
from encroot.migrate.plan import choose_goal, plan_phase, plan_sync, trees
from encroot.migrate.run import fresh_snapshot_name
from encroot.names import DatasetName, PoolName
from encroot.owned import MigrateCutover

SNAPS = (Snap("s1", "g1", 10), Snap("s2", "g2", 20))


def snaps(name: str, *shorts: str) -> tuple[Snap, ...]:
    """Snapshots with GUIDs derived from the dataset's relative name (same on both sides)."""
    relative = name.split("/", 1)[1] if "/" in name else ""
    return tuple(Snap(short, f"{relative}@{short}", 10 * (i + 1)) for i, short in enumerate(shorts))


def enc(name: str, root: str, txg: int, *shorts: str, **extra: str) -> Node:
    return Node(name, "filesystem", encryption="aes-256-gcm", encryptionroot=root,
                keystatus="available", keyformat="passphrase", createtxg=txg,
                snapshots=snaps(name, *shorts), **extra)


def source_side(*shorts: str) -> Side:
    """src: root (passphrase) with data/a/b, h (own hex root) with h/x, plain, vol."""
    nodes = [
        enc("src", "src", 1, *shorts, mounted="yes", mountpoint="/src"),
        enc("src/data", "src", 2, *shorts),
        enc("src/data/a", "src", 3, *shorts),
        enc("src/data/a/b", "src", 4, *shorts),
        enc("src/h", "src/h", 5, *shorts),
        enc("src/h/x", "src/h", 6, *shorts),
        Node("src/plain", "filesystem", createtxg=7, snapshots=snaps("src/plain", *shorts)),
        replace(enc("src/vol", "src", 8, *shorts), type="volume"),
    ]
    return Side("src", {n.name: n for n in nodes})


def destination_side(*nodes: Node, encrypted: bool = True) -> Side:
    root = Node("dst", "filesystem", encryption="aes-256-gcm" if encrypted else "off",
                encryptionroot="dst" if encrypted else "-",
                keystatus="available" if encrypted else "-", keylocation="prompt")
    return Side("dst", {n.name: n for n in (root, *nodes)})


def state(source: Side, destination: Side | None, **extra: object) -> MigrateState:
    values: dict[str, object] = {"destination_pool": {"feature@encryption": "active"},
                                 "destination_available": 10**12, "root_files": ()}
    values.update(extra)
    return MigrateState(source, destination, **values)  # type: ignore[arg-type]


STAGING = "dst/encroot-migrate"


def received(source: Side, *shorts: str, reparented: bool = False) -> list[Node]:
    """DST's copy of SRC as a clean -R receive of SRC's root into the staging leaves it;
    ``reparented``: after cutover's change-key -i, before the moves."""
    nodes = []
    for node in source.nodes.values():
        name = STAGING + node.name[3:]
        root = "-" if not node.encrypted else (
            ("dst" if reparented else STAGING) if node.encryptionroot == "src"
            else STAGING + node.encryptionroot[3:])
        nodes.append(replace(node, name=name, encryptionroot=root, keystatus="unavailable",
                             snapshots=snaps(node.name, *shorts)))
    return nodes


def moved(nodes: list[Node], *relative: str) -> list[Node]:
    """``nodes`` after cutover moved the child trees ``relative`` out of the staging."""
    result = []
    for node in nodes:
        inside = node.name[len(STAGING) + 1:]
        if inside and inside.split("/")[0] in relative:
            root = node.encryptionroot
            if root.startswith(STAGING + "/"):
                root = "dst" + root[len(STAGING):]
            node = replace(node, name=f"dst/{inside}", encryptionroot=root)
        result.append(node)
    return result


def per_tree(source: Side, *shorts: str) -> list[Node]:
    """DST's copy with an unencrypted DST root: each child tree received in place."""
    nodes = []
    for node in source.nodes.values():
        if node.name == "src":
            continue
        top = "dst/" + node.name.split("/")[1]
        root = "-" if not node.encrypted else (
            top if node.encryptionroot == "src" else "dst" + node.encryptionroot[3:])
        nodes.append(replace(node, name="dst" + node.name[3:], encryptionroot=root,
                             keystatus="unavailable", snapshots=snaps(node.name, *shorts)))
    return nodes


REQUEST = MigrateRequest(DatasetName("src"), PoolName("dst"), phase="initial")


def test_initial_sends_the_whole_root_as_one_replication_stream_into_the_staging() -> None:
    plan = plan_phase(REQUEST, state(source_side("s1"), destination_side()), "initial", "new")
    assert plan.goal is not None and plan.goal.create and plan.goal.name == "new"
    assert [t.command() for t in plan.transfers] == [
        "zfs send -w -R src@new | zfs receive -u -s dst/encroot-migrate"]
    assert not plan.refusals
    assert any("received below dst/encroot-migrate" in note for note in plan.notes)
    assert {"source": "src/h/x", "target": "dst/h/x", "type": "filesystem", "snapshots": "2",
            "encryptionroot_after": "dst/h"} in plan.datasets


def test_catch_up_sends_an_incremental_replication_stream_from_the_newest_common() -> None:
    source = source_side("s1", "s2")
    destination = destination_side(*received(source_side("s1"), "s1"))
    plan = plan_phase(replace(REQUEST, phase="catch-up"), state(source, destination),
                      "catch-up", "new")
    assert [(t.kind, t.command()) for t in plan.transfers] == [(
        "tree-incremental",
        "zfs send -w -R -I src@s1 src@new | zfs receive -u -s dst/encroot-migrate")]


def test_partial_receives_are_resumed_first_and_alone() -> None:
    source = source_side("s1")
    nodes = received(source, "s1")
    nodes[1] = replace(nodes[1], resume_token="1-abc-de-789")
    transfers, refusals = plan_sync(REQUEST, state(source, destination_side(*nodes)), "s1")
    assert [(t.kind, t.source, t.target, t.spec.describe()) for t in transfers] == [
        ("resume", "src/data", "dst/encroot-migrate/data", "zfs send -t <token>")]
    assert not refusals


def test_a_cut_replication_stream_is_repaired_dataset_by_dataset() -> None:
    source = source_side("s1", "s2", "s3")
    cut = f"{STAGING}/data/a"
    nodes = [n for n in received(source, "s1", "s2") if not n.name.startswith(cut)]
    behind = [replace(n, snapshots=snaps("src/data/a", "s1"))
              for n in received(source, "s1") if n.name == cut]
    destination = destination_side(*nodes, *behind)
    transfers, _ = plan_sync(REQUEST, state(source, destination), "s3")
    kinds = [(t.kind, t.target, t.spec.describe()) for t in transfers]
    assert kinds == [
        ("dataset-incremental", cut, "zfs send -w -I src/data/a@s1 src/data/a@s2"),
        ("tree", f"{cut}/b", "zfs send -w -R src/data/a/b@s2"),
        # the last -R -I puts the encryption hierarchy back
        ("tree-incremental", STAGING, "zfs send -w -R -I src@s2 src@s3")]


@pytest.mark.parametrize("taken", ["dst/data", STAGING])
def test_a_name_taken_on_dst_is_refused_with_the_fix(taken: str) -> None:
    source = source_side("s1")
    stranger = Node(taken, "filesystem", snapshots=(Snap("x", "other", 5),))
    plan = plan_phase(REQUEST, state(source, destination_side(stranger)), "initial", "new")
    assert any(f"{taken} exists on DST and shares no snapshot" in r.message and
               f"zfs rename {taken}" in r.fix for r in plan.refusals)
    with pytest.raises(MigrateRefused):
        plan.refuse_if_needed()


def test_a_source_child_with_the_staging_name_is_refused() -> None:
    nodes = dict(source_side("s1").nodes)
    nodes["src/encroot-migrate"] = replace(nodes["src/data"], name="src/encroot-migrate")
    plan = plan_phase(REQUEST, state(Side("src", nodes), destination_side()), "initial", "n")
    assert "SRC has a child named encroot-migrate" in plan.refusals[0].message


@pytest.mark.parametrize("moved_out", [(), ("data", "h", "plain", "vol")])
def test_a_raw_incremental_after_re_parenting_is_refused(moved_out: tuple[str, ...]) -> None:
    source = source_side("s1", "s2")
    nodes = moved(received(source_side("s1"), "s1", reparented=True), *moved_out)
    if moved_out:  # a finished cutover dropped SRC root's copy
        nodes = [n for n in nodes if n.name != STAGING]
    plan = plan_phase(replace(REQUEST, phase="catch-up"), state(source, destination_side(*nodes)),
                      "catch-up", "new")
    assert not plan.transfers
    text = plan.refusals[0].text()
    assert "12614" in text and "fresh full transfer" in text
    assert ("dst/data" if moved_out else STAGING) in text


def test_an_interrupted_cutover_goes_on_where_it_stopped() -> None:
    source = source_side("s1")
    destination = destination_side(*moved(received(source, "s1", reparented=True), "data"))
    marker = MigrateCutover(source="src", snapshot="s1", stage="reparent")
    request = replace(REQUEST, phase="cutover")
    plan = plan_phase(request, state(source, destination, marker=marker), "cutover", "new")
    assert plan.transfers_done and not plan.transfers and plan.goal is not None
    assert plan.goal.name == "s1"
    assert [(s.action, s.dataset, s.argument) for s in plan.steps
            if s.action in ("load-key", "inherit-key", "move", "drop-staging")] == [
        ("move", f"{STAGING}/h", "dst/h"), ("move", f"{STAGING}/plain", "dst/plain"),
        ("move", f"{STAGING}/vol", "dst/vol"), ("drop-staging", STAGING, "")]
    catch_up = plan_phase(replace(REQUEST, phase="catch-up"),
                          state(source, destination, marker=marker), "catch-up", "new")
    assert "12614" in catch_up.refusals[0].text()


def test_cutover_loads_and_re_parents_the_staging_alone_then_moves_every_tree_out() -> None:
    source = source_side("s1")
    destination = destination_side(*received(source, "s1"))
    plan = plan_phase(replace(REQUEST, phase="cutover"), state(source, destination),
                      "cutover", "new")
    actions = [(str(s.action), s.dataset) for s in plan.steps]
    keyed = [step for step in actions if step[0] in ("load-key", "inherit-key")]
    assert keyed == [("load-key", STAGING), ("inherit-key", STAGING)]
    moves = [s.command for s in plan.steps if s.action == "move"]
    assert moves == [f"zfs rename -u {STAGING}/{name} dst/{name}"
                     for name in ("data", "h", "plain")] + [
        f"zfs rename {STAGING}/vol dst/vol"]  # zfs rename -u refuses volumes
    # the key is loaded (which proves SRC's key) before the marker, re-parenting after it;
    # the staging is dropped (without -r: ZFS refuses while a child is left) once every
    # tree is out
    order = [actions.index(step) for step in (
        ("load-key", STAGING), ("mark", "dst"), ("inherit-key", STAGING),
        ("move", f"{STAGING}/vol"), ("drop-staging", STAGING), ("cold-start", "dst"))]
    drop = plan.steps[actions.index(("drop-staging", STAGING))]
    assert drop.command == f"zfs destroy {STAGING}@% && zfs destroy {STAGING}"
    assert order == sorted(order)
    assert actions[-1] == ("unmark", "dst")


def test_files_in_the_root_refuse_cutover_and_warn_before() -> None:
    files = state(source_side("s1"), destination_side(), root_files=("a.txt",))
    cutover = plan_phase(replace(REQUEST, phase="cutover"), files, "cutover", "new")
    assert "stores files itself (a.txt)" in cutover.refusals[0].message
    assert "--root-data=dataset:NAME" in cutover.refusals[0].fix
    initial = plan_phase(REQUEST, files, "initial", "new")
    assert not initial.refusals and "before cutover" in initial.notes[0]
    unknown = state(source_side("s1"), destination_side(), root_files=None)
    assert "not mounted" in plan_phase(replace(REQUEST, phase="cutover"), unknown, "cutover",
                                       "new").refusals[0].message


def test_root_data_as_a_dataset_keeps_the_staging_under_its_name_without_src_mounts() -> None:
    request = replace(REQUEST, phase="cutover", root_data="dataset:keep")
    source = source_side("s1")
    st = state(source, destination_side(*received(source, "s1")),
               source_root_local={"mountpoint": "/srv", "compression": "lz4"})
    steps = plan_phase(request, st, "cutover", "s1").steps
    assert [(s.action, s.dataset, s.argument) for s in steps
            if s.action in ("move", "inherit", "drop-staging")][-2:] == [
        ("move", STAGING, "dst/keep"), ("inherit", "dst/keep", "mountpoint")]
    assert request.destination_name("src") == "dst/keep"
    assert request.source_name(f"{STAGING}/data/a") == "src/data/a"


def test_root_data_as_a_dataset_without_staging_is_sent_without_replication() -> None:
    request = replace(REQUEST, root_data="dataset:keep", allow_unencrypted_destination=True)
    plan = plan_phase(request, state(source_side("s1"), destination_side(encrypted=False)),
                      "initial", "s1")
    assert plan.transfers[0].command() == "zfs send -w src@s1 | zfs receive -u -s dst/keep"


def test_a_clone_of_a_root_snapshot_needs_the_root_kept_as_a_dataset() -> None:
    nodes = dict(source_side("s1").nodes)
    nodes["src/data"] = replace(nodes["src/data"], origin="src@s1")
    st = state(Side("src", nodes), destination_side())
    cutover = plan_phase(replace(REQUEST, phase="cutover"), st, "cutover", "n")
    assert "src/data is a clone of a snapshot of SRC root" in cutover.refusals[0].message
    kept = replace(REQUEST, phase="cutover", root_data="dataset:keep")
    assert not plan_phase(kept, st, "cutover", "n").refusals


def test_destination_preconditions_name_the_fix() -> None:
    source = source_side("s1")
    missing = plan_phase(REQUEST, state(source, None), "initial", "n").refusals[0]
    assert "not imported" in missing.message and "zpool create -O encryption=on" in missing.fix
    plain = plan_phase(REQUEST, state(source, destination_side(encrypted=False)), "initial",
                       "n").refusals[0]
    assert "not encrypted" in plain.message and "--allow-unencrypted-destination" in plain.fix
    assert "keyformat=passphrase" in plain.fix
    feature = plan_phase(REQUEST, state(source, destination_side(), destination_pool={
        "feature@encryption": "disabled"}), "initial", "n").refusals[0]
    assert feature.fix == "zpool set feature@encryption=enabled dst"


def test_not_enough_space_is_refused_with_both_numbers() -> None:
    first = plan_phase(REQUEST, state(source_side("s1"), destination_side(),
                                      destination_available=1000), "initial", "s1")
    estimates = {t.command(): 3200 for t in first.transfers}
    plan = plan_phase(REQUEST, state(source_side("s1"), destination_side(),
                                     destination_available=1000), "initial", "s1", estimates)
    assert plan.estimated_bytes == 3200
    assert any("1000 B free" in r.message and "3.1 KiB" in r.message for r in plan.refusals)


def test_an_unencrypted_destination_on_purpose_keeps_trees_as_roots() -> None:
    request = replace(REQUEST, allow_unencrypted_destination=True)
    source = source_side("s1")
    fresh = plan_phase(request, state(source, destination_side(encrypted=False)), "initial", "n")
    assert [(t.kind, t.target) for t in fresh.transfers] == [
        ("tree", "dst/data"), ("tree", "dst/h"), ("tree", "dst/plain"), ("tree", "dst/vol")]
    st = state(source, destination_side(*per_tree(source, "s1"), encrypted=False))
    assert not plan_phase(request, st, "initial", "n").refusals
    assert expected_encryption_root(request, st, source.nodes["src/data/a"]) == "dst/data"
    assert expected_encryption_root(request, st, source.nodes["src/h/x"]) == "dst/h"
    steps = plan_phase(replace(request, phase="cutover"), st, "cutover", "n").steps
    assert not any(s.action == "inherit-key" and s.dataset == "dst/data" for s in steps)


def test_root_properties_leave_encryption_and_mount_points_behind() -> None:
    st = state(source_side("s1"), destination_side(), source_root_local={
        "compression": "lz4", "mountpoint": "/", "keylocation": "prompt", "user:x": "1",
        "encroot:migrate": "{}", "canmount": "off"})
    assert root_properties(REQUEST, st) == {"canmount": "off", "compression": "lz4",
                                            "user:x": "1"}


def test_the_goal_reuses_an_unsent_encroot_snapshot_but_cutover_takes_a_fresh_one() -> None:
    source = source_side("s1", "encroot-migrate-1")
    destination = destination_side(*received(source_side("s1"), "s1"))
    st = state(source, destination)
    assert choose_goal(REQUEST, st, "initial", "fresh").name == "encroot-migrate-1"
    assert choose_goal(REQUEST, st, "cutover", "fresh").name == "fresh"
    given = replace(REQUEST, snapshot="s1")
    assert choose_goal(given, st, "initial", "fresh").create is False
    assert fresh_snapshot_name(st, now=0) == "encroot-migrate-19700101-000000"


def test_a_fresh_snapshot_name_never_reuses_one_taken_in_the_same_second() -> None:
    source = source_side("s1", "encroot-migrate-19700101-000000")
    assert fresh_snapshot_name(state(source, None), now=0) == \
        "encroot-migrate-19700101-000000-2"


def test_trees_with_clones_move_after_their_origins_trees() -> None:
    source = source_side("s1")
    nodes = dict(source.nodes)
    nodes["src/aaa"] = replace(nodes["src/data"], name="src/aaa", createtxg=1,
                               origin="src/vol@s1")
    order = [n.name for n in trees(REQUEST, state(Side("src", nodes), destination_side()))]
    assert order.index("src/vol") < order.index("src/aaa")
    nodes["src/vol"] = replace(nodes["src/vol"], origin="src/aaa@s1")
    with pytest.raises(MigrateRefused, match="cycle"):
        trees(REQUEST, state(Side("src", nodes), destination_side()))


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"phase": "later"}, InputError, "--phase 'later'"),
    ({"root_data": "dataset:a/b"}, InputError, "--root-data"),
    ({"root_data": "move"}, InputError, "use copy, skip or dataset:NAME"),
    ({"root_data": "dataset:encroot-migrate"}, InputError, "choose another NAME"),
    ({"snapshot": "bad@name"}, InvalidName, "snapshot name"),
])
def test_bad_requests_are_refused_with_one_line(kwargs: dict[str, str], error: type,
                                                text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(")):
        MigrateRequest(DatasetName("src"), PoolName("dst"), **kwargs)  # type: ignore[arg-type]


def test_the_destination_must_be_another_pool() -> None:
    with pytest.raises(InputError, match="another pool"):
        MigrateRequest(DatasetName("src/data"), PoolName("src"))


def test_cli_bad_root_data_exits_2_and_names_the_option(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["migrate", "--root-data", "everything", "src", "dst"]) == 2
    err = capsys.readouterr().err
    assert "--root-data 'everything'" in err and len(err.strip().splitlines()) == 1


def test_dry_run_text_shows_transfers_steps_and_refusals() -> None:
    plan = plan_phase(replace(REQUEST, phase="cutover"),
                      state(source_side("s1"), destination_side(), root_files=("f",)),
                      "cutover", "new")
    text = "\n".join(plan_lines(plan))
    assert "REFUSED: SRC root src stores files itself" in text
    assert "zfs send -w -R src@new | zfs receive -u -s dst/encroot-migrate" in text
    assert "inherit-key dst/encroot-migrate" in text
    assert f"move {STAGING}/data (to dst/data): zfs rename -u {STAGING}/data dst/data" in text
    assert "src/data/a -> dst/data/a (filesystem, 2 snapshots; root dst)" in text
    assert "src/h/x -> dst/h/x (filesystem, 2 snapshots; root dst/h)" in text


def test_progress_line_shows_bytes_of_estimate_rate_and_eta() -> None:
    out = io.StringIO()
    times = iter([0.0, 10.0, 10.0])
    progress = TransferProgress(out, clock=lambda: next(times))
    plan = plan_phase(REQUEST, state(source_side("s1"), destination_side()), "initial", "n",
                      {"zfs send -w -R src@n | zfs receive -u -s dst/encroot-migrate": 4 << 20})
    progress.start(plan.transfers[0])
    progress.advance(1 << 20)
    assert progress.line(10.0) == ("dst/encroot-migrate: 1.0 MiB of 4.0 MiB (25%), "
                                   "102.4 KiB/s, ETA 0:30")
    progress.finish(plan.transfers[0], 1 << 20)
    assert out.getvalue() == "dst/encroot-migrate: 1.0 MiB of 1.0 MiB (100%), 102.4 KiB/s\n"


def test_progress_never_reads_more_done_than_the_total() -> None:
    """zfs send -nP underestimates small incrementals: the total grows, never past 100%."""
    out = io.StringIO()
    times = iter([0.0, 1.0, 2.0, 2.0])
    progress = TransferProgress(out, clock=lambda: next(times))
    plan = plan_phase(REQUEST, state(source_side("s1"), destination_side()), "initial", "n",
                      {"zfs send -w -R src@n | zfs receive -u -s dst/encroot-migrate": 3 << 10})
    progress.start(plan.transfers[0])
    progress.advance(12800)
    running = progress.line(1.0)
    assert running == "dst/encroot-migrate: 12.5 KiB of 12.5 KiB (99%), 12.5 KiB/s"
    progress.finish(plan.transfers[0], 12800)
    assert out.getvalue() == "dst/encroot-migrate: 12.5 KiB of 12.5 KiB (100%), 6.2 KiB/s\n"


def test_a_phase_takes_ownership_and_keeps_an_interrupted_cutover_a_cutover() -> None:
    import json

    from encroot.migrate.run import _Run, _take_ownership
    from encroot.owned import MigratePhase, Owner, dumps
    from encroot.zfs.lua import lua_string

    from .fakes import make_zfs

    request = MigrateRequest(DatasetName("src"), PoolName("dst"), phase="catch-up")
    me = Owner.current()
    cases: list[tuple[MigrateCutover | None, MigratePhase | MigrateCutover]] = [
        (None, MigratePhase(source="src", phase="catch-up", owner=me)),
        (MigrateCutover(source="src", snapshot="s1"),
         MigrateCutover(source="src", snapshot="s1", owner=me))]
    for marker, expected in cases:
        zfs, runner = make_zfs(lambda command: (0, '{"return": {"claimed": true}}', ""))
        read = {"encroot:migrate": dumps(marker)} if marker else {}
        run = _Run(zfs, zfs, request, lambda line: None, None, None, None,
                   None,  # type: ignore[arg-type]  # no PhaseResult: taking ownership needs none
                   MigrateState(Side("src"), Side("dst", root_values=read), marker=marker))
        _take_ownership(run, "catch-up")
        assert runner.argvs == [("/sbin/zfs", "program", "-j", "dst", "-")]
        script = (runner.calls[0][1] or b"").decode()
        assert lua_string(dumps(expected)) in script  # the new marker
        assert (lua_string(dumps(marker)) if marker else "expected, value = nil,") in script
        assert run.phase_marked == (marker is None)
        assert json.loads(dumps(expected))["owner"]["pid"] == me.pid


def test_a_run_that_ends_in_cutover_checks_its_keys_before_the_first_byte(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`encroot migrate --key-stdin old new` with new's key prompted: refused at once."""
    from encroot.keys import Key
    from encroot.migrate import run as migrate_run
    from encroot.migrate.model import MigrateRefused

    from .fakes import make_zfs

    monkeypatch.setattr(migrate_run, "read_state",
                        lambda zfs, request, dst=None, **_: state(source_side("s1"),
                                                                  destination_side()))
    zfs, runner = make_zfs()
    whole = MigrateRequest(DatasetName("src"), PoolName("dst"))
    assert whole.phases == ("initial", "cutover")
    with Key.passphrase("source passphrase") as key, \
            pytest.raises(MigrateRefused, match="keylocation is prompt: pass --new-key-file F"):
        migrate_run.migrate(zfs, whole, source_key=key)
    assert [argv for argv in runner.argvs if "send" not in argv and "get" not in argv] == []
