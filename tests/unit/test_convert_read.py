"""convert's bulk reads: several trees from one ``zfs get``, split back by root."""

from __future__ import annotations

from encroot.convert import ConvertState, Node, Tree
from encroot.convert.read import read_details, read_trees
from encroot.zfs import Command

from .fakes import make_zfs

ROWS = {  # what `zfs get -p -H -o name,property,value,source -r` prints, per root
    "tank/a": "tank/a\ttype\tfilesystem\t-\ntank/a/x\ttype\tfilesystem\t-\n"
              "tank/a@s\ttype\tsnapshot\t-\ntank/a@s\tguid\t11\t-\n",
    "tank/a.encroot-convert": "tank/a.encroot-convert\ttype\tfilesystem\t-\n"
                              "tank/a.encroot-convert@s\ttype\tsnapshot\t-\n"
                              "tank/a.encroot-convert@s\tguid\t11\t-\n",
}


def _answer(command: Command) -> tuple[int, str, str]:
    """``zfs get`` of the roots in ROWS; a missing root fails the whole call, as zfs does."""
    roots = [word for word in command.argv if word.startswith("tank/")]
    missing = [root for root in roots if root not in ROWS]
    if missing:
        return 1, "", f"cannot open '{missing[0]}': dataset does not exist\n"
    return 0, "".join(ROWS[root] for root in roots), ""


def test_two_trees_come_from_one_zfs_get_and_each_keeps_only_its_own_names() -> None:
    zfs, runner = make_zfs(_answer)
    trees = read_trees(zfs, ["tank/a", "tank/a.encroot-convert"])
    assert len(runner.calls) == 1
    assert sorted(trees["tank/a"].nodes) == ["tank/a", "tank/a/x"]
    assert sorted(trees["tank/a.encroot-convert"].nodes) == ["tank/a.encroot-convert"]
    assert [s.guid for s in trees["tank/a"].nodes["tank/a"].snapshots] == ["11"]


def test_a_root_gone_before_the_read_makes_each_tree_be_read_on_its_own() -> None:
    zfs, runner = make_zfs(_answer)
    trees = read_trees(zfs, ["tank/a", "tank/gone"])
    assert len(runner.calls) == 3  # the joint read failed; then one read per root
    assert sorted(trees["tank/a"].nodes) == ["tank/a", "tank/a/x"]
    assert trees["tank/gone"].nodes == {}


def test_details_add_snapshots_local_properties_and_holds_in_three_calls() -> None:
    def answer(command: Command) -> tuple[int, str, str]:
        if command.argv[1] == "holds":
            return 0, "tank/a@s\tkeep\tThu Jan  1 00:00 2026\n", ""
        if "-s" in command.argv:
            return 0, "tank/a\tcompression\tlz4\tlocal\ntank/a/x\tdropin:tag\tp\treceived\n", ""
        return 0, ("tank/a\ttype\tfilesystem\t-\ntank/a/x\ttype\tfilesystem\t-\n"
                   "tank/a@s\ttype\tsnapshot\t-\ntank/a@s\tguid\t11\t-\n"
                   "tank/a@s\tuserrefs\t1\t-\n"), ""

    zfs, runner = make_zfs(answer)
    old = Tree("tank/a", {"tank/a": Node("tank/a"), "tank/a/x": Node("tank/a/x")})
    state = read_details(zfs, ConvertState(old, Tree("tank/a.encroot-convert"), details=False))
    assert len(runner.calls) == 3 and state.details
    assert [s.guid for s in state.old.nodes["tank/a"].snapshots] == ["11"]
    assert state.old.nodes["tank/a"].local == {"compression": "lz4"}
    assert state.old.nodes["tank/a/x"].local == {"dropin:tag": "p"}
    assert state.holds == {"tank/a@s": ("keep",)}
    assert read_details(zfs, state) is state and len(runner.calls) == 3


def test_a_read_without_snapshots_lists_filesystems_and_volumes_only() -> None:
    zfs, runner = make_zfs(_answer)
    trees = read_trees(zfs, ["tank/a"], snapshots=False)
    argv = runner.argvs[0]
    assert argv[argv.index("-t") + 1] == "filesystem,volume"
    assert sorted(trees["tank/a"].nodes) == ["tank/a", "tank/a/x"]
