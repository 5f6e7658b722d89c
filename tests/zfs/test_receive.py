"""`encroot receive --allow-encryption-change` on real OpenZFS: every rule of issue 3.

Each success is checked the way a user would: load the source's key, mount,
compare file hashes with the source, and compare snapshot GUIDs.
"""

from __future__ import annotations

import json
import os

import pytest

from .conftest import PoolFactory
from .helpers import (
    PASSPHRASE,
    create_encrypted,
    encroot,
    exists,
    load_key,
    names_under,
    prop,
    sh,
    snapshot_guids,
    tree_hashes,
    write_files,
)

pytestmark = pytest.mark.zfs

FLAGS = "receive -F -u --allow-encryption-change"


@pytest.fixture
def pools(make_pool: PoolFactory) -> tuple[str, str]:
    return make_pool(), make_pool()


def encrypted_source(src: str, name: str = "fs") -> str:
    """The issue's repro: encrypted src/fs with a passphrase, a file 'ok', snapshot @A."""
    fs = f"{src}/{name}"
    create_encrypted(fs)
    write_files(f"/{fs}", {"file": b"ok\n", "big.bin": os.urandom(256 << 10)})
    sh(f"zfs snapshot {fs}@A")
    return fs


def assert_same_data(source: str, copy: str, passphrase: str | None = PASSPHRASE) -> None:
    """Load the key if needed, mount, and compare hashes and snapshot GUIDs."""
    if passphrase is not None and prop(copy, "keystatus") == "unavailable":
        load_key(prop(copy, "encryptionroot"), passphrase)
    if prop(copy, "mounted") != "yes":
        sh(f"zfs mount '{copy}'")
    assert tree_hashes(f"/{copy}") == tree_hashes(f"/{source}")
    assert snapshot_guids(copy) == snapshot_guids(source)


def test_repro_with_target_absent(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    assert prop(f"{dst}/fs", "encryptionroot") == f"{dst}/fs"
    assert_same_data(fs, f"{dst}/fs")


def test_repro_with_unencrypted_target_created_first(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs && echo old > /{dst}/fs/old")
    stock = sh(f"zfs send -w {fs}@A | zfs receive -F -u {dst}/fs", check=False)
    assert stock.returncode != 0 and "cannot be used to destroy" in stock.stderr
    sh(f"zfs snapshot {dst}/fs@old")  # the old tree's snapshots go with it
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    assert "replaced" in done.stdout and "encryption off" in done.stdout
    assert prop(f"{dst}/fs", "encryption") == "aes-256-gcm"
    assert_same_data(fs, f"{dst}/fs")
    assert names_under(dst) == [dst, f"{dst}/fs", f"{dst}/fs@A"]


@pytest.mark.all_versions
def test_unencrypted_stream_over_encrypted_target(pools: tuple[str, str]) -> None:
    src, dst = pools
    sh(f"zfs create {src}/plain && echo plain > /{src}/plain/f && zfs snapshot {src}/plain@A")
    create_encrypted(f"{dst}/fs", "another passphrase")
    write_files(f"/{dst}/fs", {"secret": b"old"})
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send {src}/plain@A")
    assert done.returncode == 0, done.stderr
    assert prop(f"{dst}/fs", "encryption") == "off"
    assert_same_data(f"{src}/plain", f"{dst}/fs", passphrase=None)


@pytest.mark.all_versions
def test_raw_stream_over_target_with_another_key(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    create_encrypted(f"{dst}/fs", "the target's own key")
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    sh(f"zfs load-key -n -L prompt {dst}/fs", stdin=PASSPHRASE.encode())
    assert_same_data(fs, f"{dst}/fs")


@pytest.mark.all_versions
def test_replication_package_replaces_the_whole_tree(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src, "root")
    sh(f"zfs create {fs}/a && zfs create {fs}/a/b && echo b > /{fs}/a/b/f")
    sh(f"zfs snapshot -r {fs}@B && echo c > /{fs}/a/c && zfs snapshot -r {fs}@C")
    sh(f"zfs create {dst}/tree && zfs create {dst}/tree/a && zfs create {dst}/tree/a/b")
    done = encroot(f"{FLAGS} {dst}/tree", stdin_from=f"zfs send -w -R {fs}@C")
    assert done.returncode == 0, done.stderr
    for child in ("", "/a", "/a/b"):
        assert prop(f"{dst}/tree{child}", "encryptionroot") == f"{dst}/tree"
    load_key(f"{dst}/tree")
    for child in ("", "/a", "/a/b"):
        assert_same_data(f"{fs}{child}", f"{dst}/tree{child}")


def test_incremental_raw_onto_unencrypted_is_refused(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs snapshot {fs}@B && zfs create {dst}/fs")
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w -i @A {fs}@B")
    assert done.returncode == 1
    assert "cannot perform raw receive on top of existing unencrypted dataset" in done.stderr
    assert prop(f"{dst}/fs", "encryption") == "off"


@pytest.mark.all_versions
def test_feature_disabled_fails_before_reading_with_guidance(
        make_pool: PoolFactory) -> None:
    src, dst = make_pool(), make_pool(no_features=True)
    fs = encrypted_source(src)
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1
    assert f"zpool set feature@encryption=enabled {dst}" in done.stderr
    assert sh(f"zpool get -H -o value feature@encryption {dst}").stdout.strip() == "disabled"
    assert not exists(f"{dst}/fs")


def test_mounted_target_needs_u(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs && echo old > /{dst}/fs/old")
    done = encroot(f"receive -F --allow-encryption-change {dst}/fs",
                   stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1 and "pass -u" in done.stderr
    assert tree_hashes(f"/{dst}/fs") == {"old": tree_hashes(f"/{dst}/fs")["old"]}
    assert prop(f"{dst}/fs", "mounted") == "yes"


def test_busy_target_at_the_swap_keeps_the_verified_new_tree_and_destroys_nothing(
        pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs && echo old > /{dst}/fs/old")
    old = tree_hashes(f"/{dst}/fs")
    done = sh(f"cd /{dst}/fs && zfs send -w {fs}@A | encroot {FLAGS} {dst}/fs", check=False)
    assert done.returncode == 1 and "busy" in done.stderr, done.stderr
    assert "nothing was destroyed" in done.stderr
    assert f"encroot receive --recover {dst}/fs" in done.stderr
    assert prop(f"{dst}/fs", "encryption") == "off" and prop(f"{dst}/fs", "mounted") == "yes"
    assert tree_hashes(f"/{dst}/fs") == old
    assert '"role":"verified"' in prop(f"{dst}/fs.encroot-recv", "encroot:recv-verified")
    finished = encroot(f"receive --recover {dst}/fs")  # no longer busy
    assert finished.returncode == 0, finished.stderr
    assert names_under(dst) == [dst, f"{dst}/fs", f"{dst}/fs@A"]
    assert_same_data(fs, f"{dst}/fs")


def test_pool_root_is_refused_with_pointer_to_migrate(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    done = encroot(f"{FLAGS} {dst}", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1 and "encroot migrate" in done.stderr


def test_extra_descendants_are_refused_unless_kept(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs && zfs create {dst}/fs/extra && echo x > /{dst}/fs/extra/x")
    done = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1 and f"{dst}/fs/extra" in done.stderr
    assert exists(f"{dst}/fs/extra")
    kept = encroot(f"{FLAGS} --keep-old {dst}/previous {dst}/fs",
                   stdin_from=f"zfs send -w {fs}@A")
    assert kept.returncode == 0, kept.stderr
    assert exists(f"{dst}/previous/extra") and prop(f"{dst}/fs", "encryption") != "off"
    assert prop(f"{dst}/previous", "encroot:recv-replaced") == "-"


def test_holds_and_clones_are_refused(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs && zfs snapshot {dst}/fs@s && zfs hold keep {dst}/fs@s")
    held = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert held.returncode == 1 and "user holds" in held.stderr
    sh(f"zfs release keep {dst}/fs@s && zfs clone {dst}/fs@s {dst}/clone")
    cloned = encroot(f"{FLAGS} {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert cloned.returncode == 1 and f"{dst}/clone" in cloned.stderr
    assert prop(f"{dst}/fs", "encryption") == "off"


@pytest.mark.all_versions
def test_without_the_flag_it_is_plain_zfs_receive(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs")
    stock = sh(f"zfs send -w {fs}@A | zfs receive -F -u {dst}/fs", check=False)
    ours = encroot(f"receive -F -u {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert (ours.returncode, ours.stderr) == (stock.returncode, stock.stderr)
    plain = encroot(f"receive -u {dst}/new", stdin_from=f"zfs send -w {fs}@A")
    assert plain.returncode == 0 and prop(f"{dst}/new", "encryptionroot") == f"{dst}/new"


def test_dry_run_prints_the_plan_and_changes_nothing(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs")
    before = names_under(dst)
    done = encroot(f"{FLAGS} -n {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 0, done.stderr
    assert "plan: replace" in done.stdout and "rename" in done.stdout
    as_json = encroot(f"{FLAGS} -n --json {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    plan = json.loads(as_json.stdout)
    assert plan["dry_run"] is True and plan["mode"] == "replace"
    assert plan["stream"]["raw"] is True
    assert names_under(dst) == before and prop(f"{dst}/fs", "encryption") == "off"


def test_json_result(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs")
    done = encroot(f"{FLAGS} --json {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    result = json.loads(done.stdout)
    assert result["mode"] == "replace"
    assert result["old_encryption"]["encryption"] == "off"
    assert result["new_encryption"]["encryptionroot"] == f"{dst}/fs"
    assert result["snapshots"] == [f"{dst}/fs@A"]


def test_raw_stream_refuses_encryption_properties(pools: tuple[str, str]) -> None:
    src, dst = pools
    fs = encrypted_source(src)
    sh(f"zfs create {dst}/fs")
    done = encroot(f"{FLAGS} -o keyformat=hex {dst}/fs", stdin_from=f"zfs send -w {fs}@A")
    assert done.returncode == 1 and "keyformat" in done.stderr
    ok = encroot(f"{FLAGS} -o keylocation=file:///nonexistent {dst}/fs",
                 stdin_from=f"zfs send -w {fs}@A")
    assert ok.returncode == 0, ok.stderr
    assert prop(f"{dst}/fs", "keylocation") == "file:///nonexistent"
