"""The command layer against real OpenZFS: pools, encrypted datasets, keys, typed errors."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from encroot import errors as e
from encroot.keys import Key
from encroot.zfs import Zfs

from .conftest import PoolFactory
from .helpers import FAST_PBKDF2

pytestmark = [pytest.mark.zfs, pytest.mark.all_versions]

HEX = "5a" * 32
RAW = bytes(range(32))
PASSPHRASE = "correct horse battery"


def fast(keyformat: str) -> dict[str, str]:
    """Properties that keep passphrase key derivation quick in the lab."""
    return {"pbkdf2iters": FAST_PBKDF2} if keyformat == "passphrase" else {}


def new_key(keyformat: str) -> Key:
    if keyformat == "hex":
        return Key.hex(HEX)
    if keyformat == "raw":
        return Key.raw(RAW)
    return Key.passphrase(PASSPHRASE)


def test_version_is_detected_for_userland_and_module(zfs: Zfs) -> None:
    version = zfs.version()
    assert version.userland >= (2, 1)
    assert version.kernel is not None, "the lab guest loads the module before tests"
    out = subprocess.run(["zfs", "version"], capture_output=True, text=True, check=True).stdout
    assert version.userland_text in out


def test_pool_on_a_file_vdev(zfs: Zfs, pool: str) -> None:
    assert zfs.pool_exists(pool)
    props = zfs.pool_get(pool, ["health", "feature@encryption"])
    assert props["health"] == "ONLINE"
    assert props["feature@encryption"] in ("enabled", "active")


def test_mirror_pool_of_two_files(zfs: Zfs, make_pool: PoolFactory) -> None:
    name = make_pool(vdevs=2, layout="mirror")
    status = subprocess.run(["zpool", "status", name], capture_output=True, text=True,
                            check=True).stdout
    assert "mirror-0" in status


@pytest.mark.parametrize("keyformat", ["hex", "raw", "passphrase"])
def test_create_encrypted_dataset_with_each_key_format(zfs: Zfs, pool: str,
                                                       keyformat: str) -> None:
    name = f"{pool}/enc {keyformat}"
    with new_key(keyformat) as key:
        zfs.create(name, {"com.example:note": "made by encroot", **fast(keyformat)}, key=key)
    table = zfs.get([name], ["encryption", "keyformat", "keylocation", "encryptionroot",
                             "keystatus", "com.example:note", "mounted"])
    assert table.value(name, "encryption") == "aes-256-gcm"
    assert table.value(name, "keyformat") == keyformat
    assert table.value(name, "keylocation") == "prompt"
    assert table.value(name, "encryptionroot") == name
    assert table.value(name, "keystatus") == "available"
    assert table.value(name, "com.example:note") == "made by encroot"
    assert table.value(name, "mounted") == "yes"


@pytest.mark.parametrize("keyformat", ["hex", "raw", "passphrase"])
def test_unload_then_load_and_check_keys(zfs: Zfs, pool: str, keyformat: str) -> None:
    name = f"{pool}/enc"
    with new_key(keyformat) as key:
        zfs.create(name, fast(keyformat), key=key)
        zfs.unmount(name)
        zfs.unload_key(name)
        assert zfs.get([name], ["keystatus"]).value(name, "keystatus") == "unavailable"
        assert zfs.check_key(name, key) is True  # load-key -n works while unloaded
        zfs.load_key(name, key)
        assert zfs.get([name], ["keystatus"]).value(name, "keystatus") == "available"
        assert zfs.check_key(name, key) is True  # and while loaded
        zfs.mount(name)


def test_wrong_key_is_incorrect_key_and_changes_nothing(zfs: Zfs, pool: str) -> None:
    name = f"{pool}/enc"
    with Key.hex(HEX) as right, Key.hex("00" * 32) as wrong:
        zfs.create(name, key=right)
        assert zfs.check_key(name, wrong) is False
        zfs.unmount(name)
        zfs.unload_key(name)
        with pytest.raises(e.IncorrectKey, match="Incorrect key provided for"):
            zfs.load_key(name, wrong)
        assert zfs.get([name], ["keystatus"]).value(name, "keystatus") == "unavailable"


def test_typed_errors_for_missing_unloaded_and_misused(zfs: Zfs, pool: str) -> None:
    with pytest.raises(e.DatasetNotFound, match="dataset does not exist"):
        zfs.get([f"{pool}/missing"], ["encryption"])
    assert zfs.exists(f"{pool}/missing") is False
    with pytest.raises(e.PoolNotFound):
        zfs.pool_get("nosuchpool", ["health"])

    name = f"{pool}/enc"
    with Key.passphrase(PASSPHRASE) as key:
        zfs.create(name, fast("passphrase"), key=key)
        zfs.create(f"{name}/child")
        with pytest.raises(e.DatasetExists):
            zfs.create(name, key=key)
        with pytest.raises(e.KeyAlreadyLoaded):
            zfs.load_key(name, key)
        with pytest.raises(e.NotEncryptionRoot):
            zfs.load_key(f"{name}/child", key)
        with pytest.raises(e.NotEncrypted):
            zfs.load_key(pool, key)
    zfs.unmount(name)
    zfs.unload_key(name, recursive=True)
    with pytest.raises(e.KeyNotLoaded):
        zfs.mount(name)
    with pytest.raises(e.KeyNotLoaded):
        zfs.unload_key(name)


def test_busy_dataset_is_dataset_busy(zfs: Zfs, pool: str) -> None:
    name = f"{pool}/busy"
    zfs.create(name)
    holder = subprocess.Popen(["sleep", "60"], cwd=f"/{name}")
    try:
        with pytest.raises(e.DatasetBusy) as caught:
            zfs.unmount(name)
        assert caught.value.retryable
    finally:
        holder.kill()
        holder.wait()


def test_encryption_feature_disabled(zfs: Zfs, make_pool: PoolFactory) -> None:
    name = make_pool(no_features=True)
    assert zfs.pool_get(name, ["feature@encryption"])["feature@encryption"] == "disabled"
    with Key.hex(HEX) as key, pytest.raises(e.FeatureDisabled, match="Encryption feature"):
        zfs.create(f"{name}/enc", key=key)
    assert not zfs.exists(f"{name}/enc")


def test_table_and_json_reads_agree(zfs: Zfs, pool: str) -> None:
    name = f"{pool}/props"
    zfs.create(name, {"com.example:tabbed": "a\tb", "com.example:lines": "one\ntwo",
                      "compression": "lz4"})
    zfs.create(f"{name}/child")
    table = zfs.get([name], ["all"], recursive=True, use_json=False)
    assert table.value(name, "com.example:tabbed") == "a\tb"
    assert table.value(name, "com.example:lines") == "one\ntwo"
    assert table[f"{name}/child"]["compression"].inherited_from == name
    assert table[f"{name}/child"]["com.example:tabbed"].inherited_from == name
    if not zfs.supports_json():
        pytest.skip(f"zfs get -j needs OpenZFS 2.3; this is {zfs.version()}")
    from_json = zfs.get([name], ["all"], recursive=True, use_json=True)
    assert list(from_json) == list(table)
    for dataset in table:
        for prop, value in table[dataset].items():
            assert from_json[dataset][prop] == value, (dataset, prop)


def test_the_verbose_log_shows_each_command_as_it_runs(pool: str) -> None:
    """The layer has no dry-run mode (operations stop after planning): it runs and logs."""
    lines: list[str] = []
    logged = Zfs(log=lines.append)
    logged.create(f"{pool}/logged one")
    assert Zfs().exists(f"{pool}/logged one")
    assert lines == [shlex.join((logged.commands.program, "create", f"{pool}/logged one"))]
    Zfs().destroy(f"{pool}/logged one")


def test_snapshot_set_inherit_destroy(zfs: Zfs, pool: str) -> None:
    name = f"{pool}/fs"
    zfs.create(name)
    zfs.set(name, {"com.example:a": "1", "com.example:b": "2"})
    zfs.snapshot([f"{name}@s1"], properties={"com.example:snap": "yes"})
    table = zfs.get([name, f"{name}@s1"], ["com.example:a", "com.example:b",
                                           "com.example:snap"])
    assert table.value(name, "com.example:b") == "2"
    assert table.value(f"{name}@s1", "com.example:snap") == "yes"
    zfs.inherit(name, "com.example:a")
    assert zfs.get([name], ["com.example:a"]).value(name, "com.example:a") == "-"
    zfs.destroy(name, recursive=True)
    assert not zfs.exists(name)


def test_export_and_import_pool(zfs: Zfs, pool: str) -> None:
    folder = os.path.dirname(_vdev_of(pool))
    zfs.export_pool(pool)
    assert not zfs.pool_exists(pool)
    zfs.import_pool(pool, search_dirs=[folder])
    assert zfs.pool_exists(pool)


def _vdev_of(pool: str) -> str:
    out = subprocess.run(["zpool", "list", "-H", "-v", "-P", pool], capture_output=True,
                         text=True, check=True).stdout
    return next(line.split()[0] for line in out.splitlines() if line.strip().startswith("/"))
