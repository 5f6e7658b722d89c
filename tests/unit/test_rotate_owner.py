"""A rotation whose encroot process still runs is nobody else's to finish (issue 12, item 2):
``encroot recover``, ``encroot get`` and a second ``encroot change-key`` refuse it with the
holder's pid and change nothing; a dead owner's journal is recovered as before."""

from __future__ import annotations

import os

import pytest

from encroot.errors import OwnerAlive, PendingRotation, RotationRefused
from encroot.keys import Key
from encroot.names import DatasetName
from encroot.owned import ROTATION_MARKER
from encroot.owned.owner import Owner, process_start
from encroot.rotate import ChangeKeyRequest, plan_for, recover, user_properties
from encroot.rotate.journal import Marker

from .fakes import FakeDatasets, make_zfs

ME = Owner.current()
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))
DEAD = Owner(host=ME.host, boot_id="another boot", pid=os.getppid(),
             start=process_start(os.getppid()))
NAME = "tank/k"


def journaled(owner: Owner) -> FakeDatasets:
    marker = Marker(id="j1", started="T", owner=owner, inherit=False, old_keyformat="hex",
                    old_pbkdf2salt="0", old_pbkdf2iters="0", old_encryptionroot=NAME)
    props = {"encryption": "aes-256-gcm", "keyformat": "hex", "keylocation": "prompt",
             "encryptionroot": NAME, "keystatus": "available", "pbkdf2iters": "0",
             "pbkdf2salt": "0", "origin": "-", ROTATION_MARKER: marker.dumps()}
    return FakeDatasets({"tank": {"encryption": "off"}, NAME: props},
                        local={NAME: {ROTATION_MARKER}})


def test_recover_refuses_a_running_rotation_and_names_its_process() -> None:
    fake = journaled(LIVE)
    zfs, _ = make_zfs(fake)
    with pytest.raises(OwnerAlive, match=f"{NAME} is held by encroot pid {LIVE.pid}"):
        recover(zfs, NAME)
    assert fake.changes == []


def test_a_second_change_key_and_get_refuse_a_running_rotation() -> None:
    fake = journaled(LIVE)
    zfs, _ = make_zfs(fake)
    with Key.hex(os.urandom(32).hex()) as key:
        request = ChangeKeyRequest(DatasetName(NAME), key=key)
        with pytest.raises(OwnerAlive, match="wait for it or stop it"):
            plan_for(zfs, [request])
    with pytest.raises(OwnerAlive):
        user_properties(zfs, NAME)
    assert fake.changes == []


def test_force_and_a_dead_owner_let_recovery_decide() -> None:
    for owner, force in ((LIVE, True), (DEAD, False)):
        fake = journaled(owner)
        zfs, _ = make_zfs(fake)
        # No key, same format, no history: only a key can tell; but it got that far.
        with pytest.raises(PendingRotation, match="--new-key-file"):
            recover(zfs, NAME, force=force)
        assert fake.changes == []


def test_a_rotation_written_from_another_host_is_left_alone_unless_forced() -> None:
    elsewhere = Owner(host="another-host", boot_id=ME.boot_id, pid=os.getpid(), start=ME.start)
    fake = journaled(elsewhere)
    zfs, _ = make_zfs(fake)
    with pytest.raises(RotationRefused, match=r"host another-host .*liveness cannot be checked"
                                              r".*encroot recover --force tank/k"):
        recover(zfs, NAME)
    assert fake.changes == []
    with pytest.raises(PendingRotation, match="--new-key-file"):  # forced: evidence decides
        recover(zfs, NAME, force=True)
