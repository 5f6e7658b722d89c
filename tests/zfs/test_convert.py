"""`encroot encrypt`, `reencrypt`, `decrypt` on real OpenZFS (issue 15).

One small tree with every kind of thing a conversion must carry: nested
filesystems (names with spaces), a volume, a clone, user and local
properties, a `canmount=noauto` boot-environment layout, several snapshots
and a hold, files with known hashes, writes between phases.  After each
conversion the tree is checked the way a user would: same names, snapshot
GUIDs, files, properties, holds, clone origins and mounts, the new
encryption, and the key nowhere in `zpool history -il`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import (
    encroot,
    exists,
    mount_tree,
    names_under,
    prop,
    props_under,
    sh,
    snapshot_guids,
    tree_hashes,
    unmount_tree,
)

pytestmark = pytest.mark.zfs

HEX_1 = "0123456789abcdef" * 4
HEX_2 = "fedcba9876543210" * 4


@dataclass
class Scene:
    pool: str
    top: str
    key_dir: Path

    @property
    def filesystems(self) -> list[str]:
        return [self.top, f"{self.top}/child one", f"{self.top}/child one/deep",
                f"{self.top}/clone", f"{self.top}/ROOT/be"]

    def key_file(self, text: str, name: str) -> Path:
        path = self.key_dir / name
        path.write_text(text)
        return path


def build_tree(pool: str, key_dir: Path, *, encrypted_with: Path | None = None) -> Scene:
    top = f"{pool}/my data"
    crypt = (f"-o encryption=on -o keyformat=hex -o keylocation=file://{encrypted_with}"
             if encrypted_with else "")
    sh(f"""
zfs create {crypt} -o compression=lz4 -o com.example:tag='a b' '{top}'
zfs create '{top}/child one'
zfs create -o recordsize=64k '{top}/child one/deep'
zfs create -V 4M -o com.example:role=disk '{top}/vol'
zfs create -o canmount=off -o mountpoint=none '{top}/ROOT'
zfs create -o canmount=noauto -o mountpoint='/{pool}-be' '{top}/ROOT/be'
echo one > '/{top}/f1'; head -c 100000 /dev/urandom > '/{top}/child one/blob'
echo deep > '/{top}/child one/deep/f'
zfs snapshot -r '{top}@s1'
zfs clone '{top}/child one@s1' '{top}/clone'
echo two > '/{top}/f2'; echo cl > '/{top}/clone/c'
zfs snapshot -r '{top}@s2'
zfs hold keep '{top}@s1'
sync
""")
    return Scene(pool, top, key_dir)


def snapshot_state(scene: Scene) -> dict[str, str]:
    return {k: v for k, v in snapshot_guids(scene.top).items()
            if "@encroot-convert-" not in k}


def file_state(scene: Scene) -> dict[str, dict[str, str]]:
    table = props_under(scene.top, "mounted", "mountpoint")
    mounted = [fs for fs in scene.filesystems if table[fs]["mounted"] == "yes"]
    return {fs: tree_hashes(table[fs]["mountpoint"]) for fs in mounted}


def assert_carried_over(scene: Scene, snaps: dict[str, str],
                        files: dict[str, dict[str, str]]) -> None:
    top = scene.top
    after = snapshot_guids(top)
    assert {k: v for k, v in after.items() if k in snaps} == snaps
    assert file_state(scene) == files
    table = props_under(top, "com.example:tag", "com.example:role", "compression",
                        "recordsize", "origin", "canmount", "mounted", "mountpoint")
    assert table[top]["com.example:tag"] == "a b"
    assert table[top]["compression"] == "lz4"
    assert table[f"{top}/vol"]["com.example:role"] == "disk"
    assert table[f"{top}/child one/deep"]["recordsize"] == "65536"
    assert table[f"{top}/clone"]["origin"] == f"{top}/child one@s1"
    assert table[f"{top}/ROOT/be"]["canmount"] == "noauto"
    assert table[f"{top}/ROOT/be"]["mounted"] == "no"
    assert table[f"{top}/ROOT"]["mountpoint"] == "none"
    assert table[f"{top}/ROOT/be"]["mountpoint"] == f"/{scene.pool}-be"
    assert table[f"{top}/child one"]["canmount"] == "on"
    assert "keep" in sh(f"zfs holds -H '{top}@s1'").stdout
    leftovers = [n for n in names_under(scene.pool) if ".encroot-convert" in n]
    assert leftovers == []


@pytest.fixture
def scene(make_pool: PoolFactory, tmp_path: Path) -> Scene:
    return build_tree(make_pool(), tmp_path)


@pytest.mark.all_versions
def test_encrypt_in_phases_with_writes_between(scene: Scene) -> None:
    key = scene.key_file(HEX_1 + "\n", "new.hex")
    options = f"-o keyformat=hex -o keylocation=file://{key}"
    top = scene.top
    dry = encroot(f"encrypt -n {options} '{top}'")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert "clone of" in dry.stdout and "transfers (estimated" in dry.stdout
    assert not exists(f"{top}.encroot-convert")
    done = encroot(f"encrypt --phase initial {options} '{top}'")
    assert done.returncode == 0, done.stderr
    assert prop(f"{top}.encroot-convert", "encryptionroot") == f"{top}.encroot-convert"
    sh(f"echo three > '/{top}/f3'")
    done = encroot(f"encrypt --phase catch-up '{top}'")
    assert done.returncode == 0, done.stderr
    sh(f"echo four > '/{top}/child one/f4' && sync")
    snaps, files = snapshot_state(scene), file_state(scene)
    done = encroot(f"encrypt --phase cutover '{top}'")
    assert done.returncode == 0, done.stderr
    assert "downtime" in done.stdout and "zpool trim --secure" in done.stdout
    table = props_under(top, "encryptionroot", "keyformat", "keylocation")
    for name in [*scene.filesystems, f"{top}/vol"]:
        assert table[name]["encryptionroot"] == top, name
    assert table[top]["keyformat"] == "hex"
    assert table[top]["keylocation"] == f"file://{key}"
    assert_carried_over(scene, snaps, files)
    assert HEX_1 not in sh(f"zpool history -il {scene.pool}").stdout
    unmount_tree(top)
    sh(f"zfs unload-key -r '{top}' && zfs load-key '{top}'")
    mount_tree(top)
    assert file_state(scene) == files


@pytest.mark.all_versions
def test_reencrypt_with_a_new_key_keeping_the_old_tree(make_pool: PoolFactory,
                                                       tmp_path: Path) -> None:
    old_key = tmp_path / "k1"
    old_key.write_text(HEX_1)
    pool = make_pool()
    encrypted = build_tree(pool, tmp_path, encrypted_with=old_key)
    top = encrypted.top
    snaps, files = snapshot_state(encrypted), file_state(encrypted)
    new_key = encrypted.key_file(HEX_2, "k2")
    done = encroot(f"reencrypt --key-file {new_key} -o keyformat=hex "
                   f"--keep-old '{pool}/kept' '{top}'")
    assert done.returncode == 0, done.stderr
    assert "wrapped master key" in done.stdout
    assert prop(top, "keylocation") == "prompt"
    sh(f"zfs load-key -n -L file://{new_key} '{top}'")
    assert sh(f"zfs load-key -n -L file://{old_key} '{top}'", check=False).returncode != 0
    assert_carried_over(encrypted, snaps, files)
    assert prop(f"{pool}/kept", "canmount") == "noauto"
    assert prop(f"{pool}/kept", "mounted") == "no"
    doctor = encroot(f"doctor '{pool}'")
    assert "old-copy-kept" in doctor.stdout, doctor.stdout


def test_reencrypt_with_inherit_takes_the_parents_key(make_pool: PoolFactory,
                                                      tmp_path: Path) -> None:
    """--inherit: the re-encrypted tree (its own root today) inherits the encrypted parent's
    key; a new master key all the same, and the parent's key alone opens it."""
    pool = make_pool()
    parent_key, own_key = tmp_path / "parent.hex", tmp_path / "own.hex"
    parent_key.write_text(HEX_1)
    own_key.write_text(HEX_2)
    parent, top = f"{pool}/vault", f"{pool}/vault/my tree"
    sh(f"""
zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{parent_key} {parent}
zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{own_key} '{top}'
zfs create '{top}/child'
head -c 50000 /dev/urandom > '/{top}/child/blob'; echo top > '/{top}/f'
zfs snapshot -r '{top}@s1'
sync
""")
    snaps = snapshot_guids(top)
    files = {fs: tree_hashes(prop(fs, "mountpoint")) for fs in (top, f"{top}/child")}
    done = encroot(f"reencrypt --inherit --verify=mount '{top}'")
    assert done.returncode == 0, done.stderr
    for name in (top, f"{top}/child"):
        assert prop(name, "encryptionroot") == parent, name
    assert {k: v for k, v in snapshot_guids(top).items() if "@encroot-convert-" not in k} \
        == snaps
    unmount_tree(parent)
    sh(f"zfs unload-key -r {parent} && zfs load-key {parent}")
    mount_tree(parent)
    assert {fs: tree_hashes(prop(fs, "mountpoint")) for fs in (top, f"{top}/child")} == files
    assert [n for n in names_under(pool) if ".encroot-convert" in n] == []


@pytest.mark.all_versions
def test_decrypt(make_pool: PoolFactory, tmp_path: Path) -> None:
    key = tmp_path / "k1"
    key.write_text(HEX_1)
    scene = build_tree(make_pool(), tmp_path, encrypted_with=key)
    snaps, files = snapshot_state(scene), file_state(scene)
    done = encroot(f"decrypt --allow-plaintext --verify=mount '{scene.top}'")
    assert done.returncode == 0, done.stderr
    assert "SHA-256 of 6 files equal" in done.stdout, done.stdout
    table = props_under(scene.top, "encryption")
    for name in [*scene.filesystems, f"{scene.top}/vol"]:
        assert table[name]["encryption"] == "off", name
    assert_carried_over(scene, snaps, files)


def test_bad_input_changes_nothing(scene: Scene) -> None:
    before = names_under(scene.pool)
    key = scene.key_file(HEX_1, "k")
    cases = [
        (f"encrypt --key-file {key} '{scene.pool}'", "pool's root dataset"),
        (f"decrypt '{scene.top}'", "--allow-plaintext"),
        (f"reencrypt --key-file {key} '{scene.top}'", "use `encroot encrypt"),
        (f"encrypt -o keyformat=raw --key-file {key} '{scene.top}'", "a raw key is exactly"),
    ]
    for args, words in cases:
        done = encroot(args)
        assert done.returncode != 0 and words in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert names_under(scene.pool) == before


def test_busy_filesystem_at_cutover_is_refused_naming_the_process(scene: Scene) -> None:
    key = scene.key_file(HEX_1, "k")
    top = scene.top
    assert encroot(f"encrypt --phase initial -o keyformat=hex --key-file {key} '{top}'"
                   ).returncode == 0
    holder = sh(f"cd '/{top}/child one' && (sleep 60 >/dev/null 2>&1 & echo $!)"
                ).stdout.strip()
    try:
        done = encroot(f"encrypt --phase cutover '{top}'")
    finally:
        os.kill(int(holder), 9)
    assert done.returncode == 1 and f"pid {holder} (sleep)" in done.stderr, done.stderr
    assert prop(top, "mounted") == "yes" and prop(f"{top}/child one", "mounted") == "yes"
    assert prop(top, "encryption") == "off"
