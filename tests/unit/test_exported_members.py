"""The public API is exactly what we chose to export."""

from __future__ import annotations

import encroot
import encroot.zfs


def test_top_level_exports() -> None:
    assert set(encroot.__all__) == {
        "DatasetBusy", "DatasetExists", "DatasetName", "DatasetNotFound", "EncrootError",
        "EncryptionBoundary", "FeatureDisabled", "IncorrectKey", "InputError", "InvalidKey",
        "InvalidName", "InvalidProperty", "Key", "KeyAlreadyLoaded", "KeyNotLoaded", "LabError",
        "NotEncrypted", "NotEncryptionRoot", "OutOfSpace", "PermissionDenied", "PoolName",
        "PoolNotFound", "SnapshotName", "UserPropertyName", "Zfs", "ZfsError", "ZfsUnavailable",
        "__version__", "ChangeKey", "ChangeKeyResult", "Dataset", "PendingRotation",
        "RecoveryResult", "RotationFailed", "RotationRefused", "StrategyUnavailable",
        "change_keys", "change_keys_async",
    }
    for name in encroot.__all__:
        assert hasattr(encroot, name), name


def test_zfs_layer_exports() -> None:
    for name in encroot.zfs.__all__:
        assert hasattr(encroot.zfs, name), name
    assert "Zfs" in encroot.zfs.__all__ and "Runner" in encroot.zfs.__all__


def test_error_tree() -> None:
    assert issubclass(encroot.InvalidName, ValueError)
    for cls in (encroot.IncorrectKey, encroot.DatasetNotFound, encroot.EncryptionBoundary):
        assert issubclass(cls, encroot.ZfsError) and issubclass(cls, encroot.EncrootError)
    assert not issubclass(encroot.LabError, encroot.ZfsError)
