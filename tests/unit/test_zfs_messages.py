"""stderr of failed commands maps to typed errors, quoting ZFS's own line."""

from __future__ import annotations

import pytest

from encroot import errors as e
from encroot.zfs import Command, Result, translate

CASES = [
    ("Key load error: Incorrect key provided for 'tank/x'.", e.IncorrectKey),
    ("Key load error: Key already loaded for 'tank/x'.", e.KeyAlreadyLoaded),
    ("Key unload error: Key already unloaded for 'tank/x'.", e.KeyNotLoaded),
    ("cannot mount '/tank/x': encryption key not loaded", e.KeyNotLoaded),
    ("Key load error: 'tank/plain' is not encrypted.", e.NotEncrypted),
    ("Key load error: Keys must be loaded for encryption root of 'tank/x/y' (tank/x).",
     e.NotEncryptionRoot),
    ("Encryption create error: Encryption feature not enabled.", e.FeatureDisabled),
    ("cannot receive new filesystem stream: zfs receive -F cannot be used to destroy an "
     "encrypted filesystem or overwrite an unencrypted one with an encrypted one",
     e.EncryptionBoundary),
    ("cannot receive incremental stream: cannot perform raw receive on top of existing "
     "unencrypted dataset", e.EncryptionBoundary),
    ("cannot open 'nope': no such pool", e.PoolNotFound),
    ("cannot open 'tank/nope': dataset does not exist", e.DatasetNotFound),
    ("cannot create 'tank/x': dataset already exists", e.DatasetExists),
    ("cannot destroy 'tank/x': dataset is busy", e.DatasetBusy),
    ("cannot unmount '/tank/x': pool or dataset is busy", e.DatasetBusy),
    ("cannot create 'tank/x': permission denied", e.PermissionDenied),
    ("cannot create 'tank/x': out of space", e.OutOfSpace),
]


@pytest.mark.parametrize(("stderr", "cls"), CASES)
def test_known_messages(stderr: str, cls: type[e.ZfsError]) -> None:
    result = Result(Command(("zfs", "x", "tank/x")), 1, "", stderr + "\n")
    error = translate(result)
    assert type(error) is cls
    assert error.message == stderr
    assert error.argv == ("zfs", "x", "tank/x") and error.returncode == 1


def test_unknown_message_stays_a_plain_zfs_error_with_the_text() -> None:
    error = translate(Result(Command(("zfs", "frob")), 2, "", "something new happened\n"))
    assert type(error) is e.ZfsError and str(error) == "something new happened"


def test_message_is_the_line_that_proved_the_class() -> None:
    stderr = "warning: something\ncannot open 'tank/x': dataset does not exist\nusage: ...\n"
    error = translate(Result(Command(("zfs", "get")), 1, "", stderr))
    assert isinstance(error, e.DatasetNotFound)
    assert str(error) == "cannot open 'tank/x': dataset does not exist"


def test_empty_stderr_says_the_status() -> None:
    error = translate(Result(Command(("/sbin/zfs", "x")), 3, "", ""))
    assert str(error) == "/sbin/zfs exited with status 3"


def test_only_busy_is_retryable() -> None:
    assert e.DatasetBusy.retryable
    assert not any(cls.retryable for _, cls in CASES if cls is not e.DatasetBusy)
