"""encroot migrate on real OpenZFS: a whole encrypted pool root moved to a mirror pool, raw.

SRC is a pool whose root is an encryption root (passphrase) holding: an
inheriting tree three levels deep, a separately keyed child (hex) with an
inheriting child named with a space and every other sign ZFS allows (``ODD``), an
unencrypted child, a zvol, a boot layout
``ROOT/default`` (canmount=noauto) with a clone ``ROOT/be2``, user
properties, several snapshots, files with known hashes, and a file stored
in the root itself.  DST is a mirror of two file vdevs, encrypted with its
own passphrase.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from encroot import Key

from .conftest import PoolFactory, PoolMaker, SavedPool
from .helpers import (
    FAST_PBKDF2,
    PASSPHRASE,
    Run,
    encroot,
    prop,
    props_under,
    sh,
    snapshot_guids,
    tree_hashes,
    write_files,
)

pytestmark = pytest.mark.zfs

DST_PASSPHRASE = "a different passphrase"
# A dataset name with a space, ':', '.', '-' and '_': every step must pass it whole.
ODD = "data/h/my x:1.2-3_4"
INHERITING = ("data", "data/a", "data/a/b", "data/a/b/c", "ROOT", "ROOT/default", "ROOT/be2",
              "vol")


def passphrase_pool(make_pool: PoolFactory, passphrase: str, size: str = "256M",
                    **options: object) -> str:
    """A pool whose root is an encryption root with ``passphrase`` (fast PBKDF2)."""
    return make_pool(size=size, key=Key.passphrase(passphrase),
                     root_properties={"pbkdf2iters": FAST_PBKDF2}, **options)


def build_source(pool: str, folder: Path) -> dict[str, dict[str, str]]:
    """The tree described above; returns the files written per dataset (relative name)."""
    hex_key = folder / f"{pool}-hex.key"
    hex_key.write_text(os.urandom(32).hex())
    sh(f"""
zfs set compression=lz4 user:site=lab {pool}
zfs create -p {pool}/data/a/b/c
zfs set user:tag=deep {pool}/data/a
zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{hex_key} {pool}/data/h
zfs create '{pool}/{ODD}'
zfs create -o encryption=off {pool}/plain
zfs create -V 8M {pool}/vol
zfs create -o canmount=off -o mountpoint=none {pool}/ROOT
zfs create -o canmount=noauto -o mountpoint=/{pool}-be {pool}/ROOT/default
zfs mount {pool}/ROOT/default
""")
    files = {
        "": {"root-file.txt": os.urandom(3000).hex()},
        "data/a": {"a.bin": os.urandom(50_000).hex()},
        "data/a/b/c": {"deep/c.txt": "deep file"},
        ODD: {"x.txt": os.urandom(1000).hex()},
        "plain": {"plain.txt": "not encrypted"},
        "ROOT/default": {"etc/hostname": "lab"},
    }
    write(pool, files)
    sh(f"zfs snapshot -r {pool}@s1 && zfs clone -o canmount=noauto -o mountpoint=/{pool}-be2 "
       f"{pool}/ROOT/default@s1 {pool}/ROOT/be2 && zfs snapshot -r {pool}@s2")
    return files


def write(pool: str, files: dict[str, dict[str, str]]) -> None:
    for relative, content in files.items():
        mountpoint = prop(f"{pool}/{relative}".rstrip("/"), "mountpoint")
        write_files(mountpoint, {name: text.encode() for name, text in content.items()})


def relative_guids(root: str) -> dict[str, str]:
    return snapshot_guids(root)


def prepare(factory: PoolFactory, folder: Path) -> tuple[str, str, Path, Path]:
    """(SRC, DST, SRC key file, DST key file) with SRC built and DST a mirror."""
    source = passphrase_pool(factory, PASSPHRASE)
    destination = passphrase_pool(factory, DST_PASSPHRASE, vdevs=2, layout="mirror")
    build_source(source, folder)
    source_key, destination_key = folder / f"{source}.key", folder / f"{destination}.key"
    source_key.write_text(PASSPHRASE)
    destination_key.write_text(DST_PASSPHRASE)
    return source, destination, source_key, destination_key


Saved = tuple[SavedPool, SavedPool, Path, Path]


@pytest.fixture(scope="module")
def saved_pools(module_make_pool: PoolMaker, tmp_path_factory: pytest.TempPathFactory
                ) -> Saved:
    """SRC and DST as ``prepare`` leaves them, built once per module and saved."""
    source, destination, source_key, destination_key = prepare(
        module_make_pool, tmp_path_factory.mktemp("saved"))
    return (module_make_pool.save(source), module_make_pool.save(destination),
            source_key, destination_key)


def restore(maker: PoolMaker, saved: Saved) -> tuple[str, str, Path, Path]:
    source, destination, source_key, destination_key = saved
    return (maker.restore(source, PASSPHRASE), maker.restore(destination, DST_PASSPHRASE),
            source_key, destination_key)


@pytest.fixture
def pools(make_pool: PoolMaker, saved_pools: Saved) -> tuple[str, str, Path, Path]:
    """Fresh SRC and DST for one test: a copy of the module's saved pair."""
    return restore(make_pool, saved_pools)


@pytest.fixture(scope="module")
def saved_after_initial(module_make_pool: PoolMaker, saved_pools: Saved) -> Saved:
    """The saved pair after ``encroot migrate --phase initial``, saved again."""
    source, destination, source_key, destination_key = restore(module_make_pool, saved_pools)
    initial = encroot(f"migrate --phase initial {source} {destination}")
    assert initial.returncode == 0, initial.stderr
    return (module_make_pool.save(source), module_make_pool.save(destination),
            source_key, destination_key)


@pytest.fixture
def initially_migrated(make_pool: PoolMaker, saved_after_initial: Saved
                       ) -> tuple[str, str, Path, Path]:
    """Fresh SRC and DST for one test, the initial phase done: a copy of the saved pair."""
    return restore(make_pool, saved_after_initial)


@dataclass(frozen=True)
class Migration:
    """A migration in three phases with writes between, shared by the checks of its result."""

    source: str
    destination: str
    destination_key: Path
    runs: tuple[Run, Run, Run]
    source_before: str


@pytest.fixture(scope="module")
def migrated(module_make_pool: PoolFactory, tmp_path_factory: pytest.TempPathFactory
             ) -> Migration:
    source, destination, source_key, destination_key = prepare(
        module_make_pool, tmp_path_factory.mktemp("migrated"))
    before = local_properties(source)
    first = encroot(f"migrate --phase initial {source} {destination}")
    assert first.returncode == 0, first.stderr
    staging = f"{destination}/encroot-migrate"
    assert prop(f"{staging}/data/a", "encryptionroot") == staging  # one root until cutover
    write(source, {"data/a": {"later.txt": "after initial"}, "plain": {"p2": "x"}})
    second = encroot(f"migrate --phase catch-up --root-data=dataset:rootdata "
                     f"{source} {destination}")
    assert second.returncode == 0, second.stderr
    write(source, {"data/a/b": {"last.txt": "after catch-up"}, "": {"root2": "r"}})
    third = encroot(f"migrate -v --phase cutover {cutover_args(source_key, destination_key)} "
                    f"{source} {destination}")
    assert third.returncode == 0, third.stderr
    return Migration(source, destination, destination_key, (first, second, third), before)


def local_properties(pool: str) -> str:
    """Every dataset's locally set properties (snapshots left out)."""
    return sh(f"zfs get -H -r -t filesystem,volume -s local -o name,property,value all "
              f"{pool}").stdout


def cutover_args(source_key: Path, destination_key: Path) -> str:
    return (f"--key-file {source_key} --new-key-file {destination_key} "
            "--root-data=dataset:rootdata --verify=mount")


def assert_migrated(source: str, destination: str) -> None:
    """The checks of the issue, made here independently of encroot's own."""
    src = relative_guids(source)
    dst = relative_guids(destination)
    moved = {name: guid for name, guid in src.items() if not name.startswith("@")}
    assert moved and all(dst.get(name) == guid for name, guid in moved.items()), \
        sorted(set(moved.items()) - set(dst.items()))[:5]
    root_snaps = {name[1:]: guid for name, guid in src.items() if name.startswith("@")}
    assert {n: dst[f"/rootdata@{n}"] for n in root_snaps} == root_snaps
    table = props_under(destination, "encryptionroot", "keyformat", "encryption", "type",
                        "origin", "canmount", "user:tag", "user:site", "compression",
                        "encroot:migrate")

    def value(name: str, prop_name: str) -> str:
        return table[f"{destination}/{name}".rstrip("/")][prop_name]

    for name in INHERITING:
        assert value(name, "encryptionroot") == destination, name
    assert value("rootdata", "encryptionroot") == destination
    assert value("data/h", "encryptionroot") == f"{destination}/data/h"
    assert value(ODD, "encryptionroot") == f"{destination}/data/h"
    assert value("data/h", "keyformat") == "hex"
    assert value("plain", "encryption") == "off"
    assert value("vol", "type") == "volume"
    assert value("ROOT/be2", "origin") == f"{destination}/ROOT/default@s1"
    assert value("ROOT/default", "canmount") == "noauto"
    assert value("data/a", "user:tag") == "deep"
    assert value("", "user:site") == "lab"
    assert value("", "compression") == "lz4"
    assert value("", "encroot:migrate") == "-"
    assert sh(f"zfs list -H -o name {destination}/encroot-migrate", check=False).returncode == 1


def cold_start_hashes(source: str, destination: str, destination_key: Path) -> None:
    """Export, import, load only DST's key, mount everything; files match SRC's."""
    dirs = " ".join(f"-d {d}" for d in sorted({os.path.dirname(p) for p in sh(
        f"zpool list -v -H -P {destination}").stdout.split() if p.startswith("/")}))
    sh(f"zpool export {destination} && zpool import {dirs} -N -R /mnt/check-{destination} "
       f"{destination} && zfs load-key -L file://{destination_key} {destination}")
    names = ("rootdata", "data/a", "data/a/b/c", "plain", "ROOT/default")
    sh("\n".join(f"zfs mount {destination}/{name}" for name in names))
    source_table = props_under(source, "mountpoint")
    table = props_under(destination, "mountpoint", "keystatus")
    for name in names:
        ours = tree_hashes(source_table[f"{source}/{name}"]["mountpoint"]
                           if name != "rootdata" else f"/{source}")
        theirs = tree_hashes(table[f"{destination}/{name}"]["mountpoint"])
        if name == "rootdata":
            ours = {k: v for k, v in ours.items() if "/" not in k}
        assert ours == theirs, name
    assert table[f"{destination}/{ODD}"]["keystatus"] == "unavailable"
    sh(f"zpool export {destination}")


@pytest.mark.all_versions
def test_three_phases_with_writes_between_move_everything_raw(migrated: Migration) -> None:
    cutover = migrated.runs[2]
    assert "SHA-256" in cutover.stdout and "cold start" in cutover.stdout
    assert_migrated(migrated.source, migrated.destination)


@pytest.mark.all_versions
def test_the_source_is_untouched_beyond_its_snapshots(migrated: Migration) -> None:
    assert local_properties(migrated.source) == migrated.source_before
    assert prop(migrated.source, "keystatus") == "available"


@pytest.mark.all_versions
def test_keys_appear_in_no_output_and_no_pool_history(migrated: Migration) -> None:
    cutover = migrated.runs[2]
    assert "zfs load-key -L prompt" in cutover.stderr and "< <secret>" in cutover.stderr
    history = sh(f"zpool history -il {migrated.source} {migrated.destination}").stdout
    for text in (*[r.stdout + r.stderr for r in migrated.runs], history):
        assert PASSPHRASE not in text and DST_PASSPHRASE not in text


@pytest.mark.all_versions
def test_refuses_a_raw_incremental_after_re_parenting(migrated: Migration) -> None:
    before = relative_guids(migrated.destination)
    again = encroot(f"migrate --phase catch-up --root-data=dataset:rootdata "
                    f"{migrated.source} {migrated.destination}")
    assert again.returncode == 1
    assert "12614" in again.stderr and "fresh full transfer" in again.stderr
    assert relative_guids(migrated.destination) == before


@pytest.mark.all_versions
def test_after_a_cold_start_the_new_key_alone_mounts_the_same_files(
        migrated: Migration) -> None:
    cold_start_hashes(migrated.source, migrated.destination, migrated.destination_key)


def test_dry_run_prints_the_plan_and_changes_nothing(
        pools: tuple[str, str, Path, Path]) -> None:
    source, destination, _, _ = pools
    before_src, before_dst = relative_guids(source), relative_guids(destination)
    run = encroot(f"migrate -n {source} {destination} --root-data=skip")
    assert run.returncode == 0, run.stderr
    assert "phase initial" in run.stdout and "phase cutover" in run.stdout
    assert f"zfs send -w -R {source}@" in run.stdout
    assert f"zfs receive -u -s {destination}/encroot-migrate" in run.stdout
    assert f"zfs rename -u {destination}/encroot-migrate/data {destination}/data" in run.stdout
    assert "inherit-key" in run.stdout and "cold-start" in run.stdout
    assert relative_guids(source) == before_src and relative_guids(destination) == before_dst


def test_files_in_the_root_need_a_choice_and_copy_re_encrypts_them(
        pools: tuple[str, str, Path, Path]) -> None:
    source, destination, source_key, destination_key = pools
    keys = f"--key-file {source_key} --new-key-file {destination_key}"
    run = encroot(f"migrate --phase cutover {keys} {source} {destination}")
    assert run.returncode == 1
    assert "stores files itself (root-file.txt" in run.stderr and "--root-data" in run.stderr
    assert sh(f"zfs list -H -o name -r {destination}").stdout.split() == [destination]
    copied = encroot(f"migrate --root-data=copy {keys} {source} {destination}")
    assert copied.returncode == 0, copied.stderr
    assert "copied into" in copied.stdout and "re-encrypted" in copied.stdout
    assert prop(destination, "keystatus") == "unavailable"  # left for the user to load
    sh(f"zfs load-key -L file://{destination_key} {destination} && zfs mount {destination}")
    assert tree_hashes(f"/{destination}")["root-file.txt"] == \
        tree_hashes(f"/{source}")["root-file.txt"]
    assert prop(destination, "encryptionroot") == destination


def test_unencrypted_destination_is_refused_with_the_command_to_create_one(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    source = passphrase_pool(make_pool, PASSPHRASE)
    destination = make_pool()
    run = encroot(f"migrate --phase initial {source} {destination}")
    assert run.returncode == 1
    assert "is not encrypted" in run.stderr
    assert "zpool create -O encryption=on -O keyformat=passphrase" in run.stderr


def test_an_unencrypted_destination_on_purpose_keeps_each_tree_under_the_source_key(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    source = passphrase_pool(make_pool, PASSPHRASE)
    destination = make_pool(size="256M", vdevs=2, layout="mirror")
    build_source(source, tmp_path)
    (tmp_path / "src.key").write_text(PASSPHRASE)
    run = encroot(f"migrate --allow-unencrypted-destination --root-data=skip "
                  f"--key-file {tmp_path / 'src.key'} {source} {destination}")
    assert run.returncode == 0, run.stderr
    for name, root in (("data", "data"), ("data/a/b/c", "data"), ("ROOT/be2", "ROOT"),
                       (ODD, "data/h"), ("vol", "vol")):
        assert prop(f"{destination}/{name}", "encryptionroot") == f"{destination}/{root}"
    assert prop(f"{destination}/data", "keyformat") == "passphrase"
    sh(f"zfs load-key -L file://{tmp_path / 'src.key'} {destination}/data")
    assert prop(f"{destination}/data/a", "keystatus") == "available"
    assert prop(f"{destination}/plain", "encryption") == "off"


def test_too_little_space_on_dst_is_refused_before_anything_changes(
        make_pool: PoolFactory, tmp_path: Path) -> None:
    source = passphrase_pool(make_pool, PASSPHRASE)
    destination = passphrase_pool(make_pool, DST_PASSPHRASE, "64M", vdevs=2, layout="mirror")
    sh(f"zfs create -o compression=off {source}/big && zfs snapshot -r {source}@s1")
    sh(f"head -c $((60 << 20)) /dev/urandom > /{source}/big/file && zfs snapshot -r {source}@s2")
    before = relative_guids(source), relative_guids(destination)
    run = encroot(f"migrate --phase initial {source} {destination}")
    assert run.returncode == 1
    assert "free and the transfer needs about" in run.stderr and "zpool add" in run.stderr
    assert (relative_guids(source), relative_guids(destination)) == before


def test_a_wrong_source_key_at_cutover_re_parents_nothing(
        initially_migrated: tuple[str, str, Path, Path], tmp_path: Path) -> None:
    source, destination, _, destination_key = initially_migrated
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not the passphrase")
    run = encroot(f"migrate --phase cutover --root-data=skip --key-file {wrong} "
                  f"--new-key-file {destination_key} {source} {destination}")
    assert run.returncode == 1
    assert f"the key given for {source} is not its key" in run.stderr
    assert prop(destination, "encroot:migrate") == "-"
    staging = f"{destination}/encroot-migrate"
    assert prop(staging, "encryptionroot") == staging
    assert prop(f"{staging}/data", "encryptionroot") == staging
