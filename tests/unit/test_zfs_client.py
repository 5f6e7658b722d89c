"""The command layer builds the exact argv, keeps secrets on stdin, and honours dry runs."""

from __future__ import annotations

import pytest

from encroot.errors import DatasetNotFound, InvalidName, InvalidProperty, PoolNotFound
from encroot.keys import Key
from encroot.zfs import Command

from .fakes import make_zfs

HEX = "ab" * 32
VERSION_23 = "zfs-2.3.2-1\nzfs-kmod-2.3.2-1\n"
VERSION_21 = "zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n"


def answer_version(text: str):  # type: ignore[no-untyped-def]
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[1] == "version":
            return 0, text, ""
        return 0, '{"datasets": {}}' if "-j" in command.argv else "", ""
    return respond


def test_create_with_key_sends_key_on_stdin_only() -> None:
    zfs, runner = make_zfs()
    with Key.hex(HEX) as key:
        zfs.create("tank/secret", {"compression": "lz4", "com.x:epoch": "1"}, key=key)
    (command, stdin), = runner.calls
    assert command.argv == (
        "/sbin/zfs", "create", "-o", "compression=lz4", "-o", "com.x:epoch=1",
        "-o", "encryption=on", "-o", "keyformat=hex", "-o", "keylocation=prompt", "tank/secret")
    assert stdin == HEX.encode()
    assert HEX not in " ".join(command.argv)
    assert command.secret_stdin and command.mutates
    assert command.shell_line().endswith("< <secret>")


def test_create_refuses_key_properties_given_with_a_key() -> None:
    zfs, runner = make_zfs()
    with Key.passphrase("password1") as key, pytest.raises(InvalidProperty, match="keyformat"):
        zfs.create("tank/x", {"keyformat": "raw"}, key=key)
    assert runner.calls == []


def test_load_key_always_reads_stdin() -> None:
    zfs, runner = make_zfs()
    with Key.raw(b"\x00" * 32) as key:
        zfs.load_key("tank/x", key)
        zfs.load_key("tank/x", key, noop=True)
    assert runner.argvs == [
        ("/sbin/zfs", "load-key", "-L", "prompt", "tank/x"),
        ("/sbin/zfs", "load-key", "-n", "-L", "prompt", "tank/x"),
    ]
    assert [stdin for _, stdin in runner.calls] == [b"\x00" * 32] * 2
    assert runner.calls[0][0].mutates and not runner.calls[1][0].mutates


def test_check_key_maps_incorrect_key_to_false() -> None:
    def respond(command: Command) -> tuple[int, str, str]:
        return 255, "", "Key load error: Incorrect key provided for 'tank/x'.\n"
    zfs, _ = make_zfs(respond)
    with Key.hex(HEX) as key:
        assert zfs.check_key("tank/x", key) is False


def test_the_layer_runs_what_it_is_asked_and_marks_what_changes_state() -> None:
    """No dry-run mode: operations stop after planning, the layer never pretends."""
    zfs, runner = make_zfs(answer_version(VERSION_21))
    zfs.get(["tank"], ["encryption"])
    zfs.set("tank", {"com.x:a": "1", "com.x:b": "2"})
    zfs.destroy("tank/x", recursive=True)
    assert [(c.argv[1:], c.mutates) for c, _ in runner.calls][1:] == [
        (("get", "-p", "-H", "-o", "name,property,value,source", "encryption", "tank"), False),
        (("set", "com.x:a=1", "com.x:b=2", "tank"), True),
        (("destroy", "-r", "tank/x"), True)]
    assert not hasattr(zfs, "dry_run")


def test_destroying_all_snapshots_names_the_whole_range_of_one_validated_dataset() -> None:
    zfs, runner = make_zfs()
    zfs.destroy_all_snapshots("tank/staging")
    assert [argv[1:] for argv in runner.argvs] == [("destroy", "tank/staging@%")]
    with pytest.raises(InvalidName):
        zfs.destroy_all_snapshots("tank/a@b")


def test_verbose_log_shows_commands_and_redacts_secrets() -> None:
    lines: list[str] = []
    zfs, _ = make_zfs(log=lines.append)
    with Key.passphrase("hunter2hunter2") as key:
        zfs.create_pool("p", ["mirror", "/a", "/b"], key=key, pool_properties={"ashift": "12"})
    assert lines == ["/sbin/zpool create -o ashift=12 -O encryption=on -O keyformat=passphrase "
                     "-O keylocation=prompt p mirror /a /b < <secret>"]
    assert "hunter2" not in lines[0]


def test_get_uses_table_output_before_2_3() -> None:
    zfs, runner = make_zfs(answer_version(VERSION_21))
    zfs.get(["tank", "tank/x@s"], ["encryption", "com.x:epoch"], recursive=True,
            types=["filesystem", "volume"])
    assert runner.argvs[-1] == (
        "/sbin/zfs", "get", "-p", "-H", "-o", "name,property,value,source", "-r",
        "-t", "filesystem,volume", "encryption,com.x:epoch", "tank", "tank/x@s")


def test_get_uses_json_from_2_3() -> None:
    zfs, runner = make_zfs(answer_version(VERSION_23))
    zfs.get(["tank"], depth=1)
    assert runner.argvs[-1] == ("/sbin/zfs", "get", "-p", "-j", "-d", "1", "all", "tank")


def test_names_are_validated_before_anything_runs() -> None:
    zfs, runner = make_zfs()
    with pytest.raises(InvalidName):
        zfs.destroy("tank/../etc")
    with pytest.raises(InvalidProperty):
        zfs.set("tank", {"BAD": "x"})
    with pytest.raises(InvalidProperty):
        zfs.create_pool("p", ["-f"])
    assert runner.calls == []


def test_exists_and_pool_exists_translate_not_found() -> None:
    def respond(command: Command) -> tuple[int, str, str]:
        if command.argv[0].endswith("zpool"):
            return 1, "", "cannot open 'nope': no such pool\n"
        return 1, "", "cannot open 'tank/nope': dataset does not exist\n"
    zfs, _ = make_zfs(respond)
    assert zfs.exists("tank/nope") is False
    assert zfs.pool_exists("nope") is False
    with pytest.raises(DatasetNotFound, match="dataset does not exist"):
        zfs.destroy("tank/nope")
    with pytest.raises(PoolNotFound):
        zfs.pool_get("nope")
    assert zfs.pool_listing("nope", ["feature@encryption"]) is None


def test_pool_listing_is_one_zpool_list_with_the_pool_columns() -> None:
    zfs, runner = make_zfs(lambda command: (0, "dst\tenabled\n\t/p/dst.img\t1G\n", ""))
    listing = zfs.pool_listing("dst", ["feature@encryption"])
    assert runner.argvs == [("/sbin/zpool", "list", "-v", "-H", "-P", "-o",
                             "name,feature@encryption", "dst")]
    assert listing is not None and listing.properties == {"feature@encryption": "enabled"}
    assert listing.devices == ("/p/dst.img",)


def test_pool_get_parses_pairs() -> None:
    def respond(command: Command) -> tuple[int, str, str]:
        return 0, "feature@encryption\tenabled\nsize\t1024\n", ""
    zfs, runner = make_zfs(respond)
    assert zfs.pool_get("p", ["feature@encryption", "size"]) == {
        "feature@encryption": "enabled", "size": "1024"}
    assert runner.argvs[0] == ("/sbin/zpool", "get", "-H", "-p", "-o", "property,value",
                               "feature@encryption,size", "p")


def test_execute_refuses_a_key_for_a_command_not_marked_secret() -> None:
    zfs, _ = make_zfs()
    with Key.hex(HEX) as key, pytest.raises(ValueError, match="marked secret"):
        zfs.execute(zfs.zfs_command("list"), key=key)

