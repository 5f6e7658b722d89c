"""encroot's owned state on real OpenZFS: legacy markers planted by hand are recovered;
a running receive's state is refused by every recovery path while it runs and the receive
completes; lookalikes and deliberately separate keys are left alone by doctor --fix;
names with spaces work throughout."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import PoolFactory
from .helpers import encroot, exists, prop, sh, snapshot_guids

pytestmark = pytest.mark.zfs

FLAGS = "receive -F -u --allow-encryption-change"


def hex_key(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(os.urandom(32).hex())
    return path


class Source:
    """An encrypted source with a snapshot and its raw stream saved to a file."""

    def __init__(self, pool: str, folder: Path, megabytes: int = 1) -> None:
        key = hex_key(folder, "src.key")
        self.name = f"{pool}/src fs"
        sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{key} "
           f"'{self.name}'")
        sh(f"head -c {megabytes << 20} /dev/urandom > '/{self.name}/data.bin'")
        sh(f"zfs snapshot '{self.name}@A'")
        self.stream = folder / "src.zstream"
        sh(f"zfs send -w '{self.name}@A' > {self.stream}")
        self.guid = prop(f"{self.name}@A", "guid")


def old_target(name: str) -> None:
    """An unencrypted dataset with a file and a snapshot, unmounted (as encroot leaves it
    after its first step)."""
    sh(f"zfs create '{name}' && echo old > '/{name}/old.txt' && zfs snapshot '{name}@before' "
       f"&& zfs unmount '{name}'")


def leftovers(parent: str) -> list[str]:
    out = sh(f"zfs list -H -o name -t all -r '{parent}'").stdout
    return [n for n in out.splitlines() if ".encroot-" in n]


def marker_of(name: str) -> str:
    return prop(name, "encroot:recv-verified") if exists(name) else "-"


def assert_new_and_clean(target: str, source: Source) -> None:
    assert prop(target, "encryption") != "off"
    assert snapshot_guids(target) == snapshot_guids(source.name)
    assert leftovers(target.rsplit("/", 1)[0]) == []
    for marker in ("encroot:recv-verified", "encroot:recv-replaced"):
        assert prop(target, marker) == "-"


# -- (a) the markers the current release writes, planted by hand ------------------------

def test_legacy_receive_markers_are_recovered(make_pool: PoolFactory, tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    source = Source(pool, tmp_path)
    target, temp, old = f"{pool}/my data", f"{pool}/my data.encroot-recv", \
        f"{pool}/my data.encroot-old"

    # verified, not swapped
    old_target(target)
    sh(f"zfs receive -u '{temp}' < {source.stream}")
    sh(f"zfs set encroot:recv-verified={source.guid} '{temp}'")
    done = encroot(f"receive --recover '{target}'")
    assert done.returncode == 0, done.stderr
    assert "swap in verified" in done.stdout
    assert_new_and_clean(target, source)

    # between the two renames: the old tree marked and aside, the verified temp beside it
    sh(f"zfs destroy -r '{target}'")
    old_target(old)
    sh(f"zfs set 'encroot:recv-replaced={target}' '{old}'")
    sh(f"zfs receive -u '{temp}' < {source.stream}")
    sh(f"zfs set encroot:recv-verified={source.guid} '{temp}'")
    done = encroot(f"receive --recover '{target}'")
    assert done.returncode == 0, done.stderr
    assert_new_and_clean(target, source)

    # --keep-old recorded in the legacy form
    sh(f"zfs destroy -r '{target}'")
    old_target(target)
    sh(f"zfs receive -u '{temp}' < {source.stream}")
    sh(f"zfs set 'encroot:recv-verified={source.guid} keep-old={pool}/prev' '{temp}'")
    done = encroot(f"receive --recover '{target}'")
    assert done.returncode == 0, done.stderr
    assert_new_and_clean(target, source)
    assert exists(f"{pool}/prev") and prop(f"{pool}/prev", "encroot:recv-replaced") == "-"


@pytest.mark.all_versions
def test_legacy_rotation_journal_and_migrate_marker(make_pool: PoolFactory,
                                                   tmp_path: Path) -> None:
    pool = make_pool()
    key = hex_key(tmp_path, "k")
    name = f"{pool}/rot"
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{key} {name}")
    journal = json.dumps({
        "id": "legacy1", "started": "T", "inherit": False, "version": 1,
        "owner": {"host": "h", "boot_id": "b", "pid": 1, "start": "1"},
        "old_keyformat": "passphrase", "old_pbkdf2salt": "1", "old_pbkdf2iters": "350000",
        "old_encryptionroot": name, "new_keyformat": "hex", "new_pbkdf2iters": None,
        "new_keylocation": None}, separators=(",", ":"), sort_keys=True)
    sh(f"zfs set 'encroot:rotation={journal}' encroot:com.example:epoch=2 {name}")
    done = encroot(f"recover {name}")
    assert done.returncode == 0, done.stderr
    assert prop(name, "encroot:rotation") == "-" and prop(name, "com.example:epoch") == "2"

    legacy = json.dumps({"source": "tank", "snapshot": "encroot-migrate-1",
                         "stage": "reparent", "devices": "/dev/x"}, sort_keys=True)
    sh(f"zfs set 'encroot:migrate={legacy}' {pool}")
    document = json.loads(encroot(f"doctor --json {pool}").stdout)
    cutover = [f for f in document["findings"] if f["code"] == "leftover-temporary"]
    assert cutover and cutover[0]["fix_argv"] == [
        ["encroot", "migrate", "--phase", "cutover", "--key-file", "<tank key>", "tank", pool]]


# -- (b) a slow receive: every recovery path refuses while it runs ----------------------

THROTTLE = ("python3 -c 'import sys, time\n"
            "data = open(sys.argv[1], \"rb\").read()\n"
            "for i in range(0, len(data), 1 << 16):\n"
            "    sys.stdout.buffer.write(data[i:i + (1 << 16)]); sys.stdout.flush(); "
            "time.sleep(0.5)' {}")


@pytest.mark.all_versions
def test_a_running_receive_is_refused_by_every_recovery_path(make_pool: PoolFactory,
                                                             tmp_path: Path) -> None:
    pool = make_pool(size="256M")
    source = Source(pool, tmp_path, megabytes=6)
    target, temp = f"{pool}/my data", f"{pool}/my data.encroot-recv"
    old_target(target)
    first = subprocess.Popen(
        ["bash", "-c", f"{THROTTLE.format(source.stream)} | encroot {FLAGS} '{target}'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while marker_of(temp) in ("-", ""):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the temporary never carried its marker"
        time.sleep(0.2)
    marker = json.loads(prop(temp, "encroot:recv-verified"))
    assert marker["role"] == "receiving" and marker["owner"]["pid"] > 0

    recovered = encroot(f"receive --recover '{target}'")
    assert recovered.returncode == 1
    assert f"{temp} is held by encroot pid {marker['owner']['pid']} on this host" in \
        recovered.stderr and "wait for it or stop it" in recovered.stderr
    fixed = encroot(f"doctor --fix --json {pool}")
    assert fixed.returncode == 1, fixed.stderr
    document = json.loads(fixed.stdout)
    assert not [f for f in document["fixes"] if "my data" in f["command"]]
    assert any(n["code"] == "operation-in-progress" and n["reason"].startswith(
        f"owner alive: encroot pid {marker['owner']['pid']}") for n in document["not_repaired"])
    second = encroot(f"{FLAGS} '{target}'", stdin_from=f"cat {source.stream}")
    assert second.returncode == 1 and "is held by encroot pid" in second.stderr
    assert first.poll() is None, "the first receive ended before the checks were done"

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert f"replaced {target}" in out
    assert_new_and_clean(target, source)


# -- (c), (d), (e): lookalikes, deliberate keys, names with spaces under doctor --fix ------

def test_doctor_fix_leaves_lookalikes_and_separate_keys_alone(make_pool: PoolFactory,
                                                              tmp_path: Path) -> None:
    pool = make_pool()
    sh(f"zfs create '{pool}/my data' && zfs create '{pool}/my data.encroot-recv'")
    parent_key = hex_key(tmp_path, "sp.key")
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{parent_key} "
       f"{pool}/sp")
    sh(f"zfs create -o encryption=on -o keyformat=hex {pool}/sp/data",  # prompted on purpose
       stdin=os.urandom(32).hex().encode())
    sh(f"zfs create -o encryption=on -o keyformat=hex -o keylocation=file://{parent_key} "
       f"'{pool}/sp/same key'")

    fixed = encroot(f"doctor --fix --json {pool}")
    document = json.loads(fixed.stdout)
    assert [f["command"] for f in document["fixes"]] == [
        f"zfs change-key -i '{pool}/sp/same key'"]
    assert document["fixes"][0]["argv"] == [["zfs", "change-key", "-i", f"{pool}/sp/same key"]]
    assert all(f["done"] for f in document["fixes"])
    assert prop(f"{pool}/sp/same key", "encryptionroot") == f"{pool}/sp"
    assert prop(f"{pool}/sp/data", "encryptionroot") == f"{pool}/sp/data"
    assert exists(f"{pool}/my data.encroot-recv")
    reasons = {(n["dataset"], n["code"]): n["reason"] for n in document["not_repaired"]}
    assert "not provably the parent's" in reasons[(f"{pool}/sp/data", "own-root-could-inherit")]
    assert reasons[(f"{pool}/my data.encroot-recv", "lookalike-unowned")] == \
        "not encroot's: encroot never touches it"
    lookalike = next(f for f in document["findings"] if f["code"] == "lookalike-unowned")
    assert lookalike["severity"] == "warning" and "not encroot's" in lookalike["message"]

    refused = encroot(f"receive --recover '{pool}/my data'")
    assert refused.returncode == 1 and "not encroot's" in refused.stderr
    assert exists(f"{pool}/my data.encroot-recv")
