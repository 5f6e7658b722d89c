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


def test_every_exception_encroot_raises_is_in_the_one_tree() -> None:
    """Operations re-export their errors, but each class is defined once, in errors.py."""
    import importlib
    import pkgutil

    import encroot.errors

    outside = []
    for module_info in pkgutil.walk_packages(encroot.__path__, "encroot."):
        if module_info.name.startswith("encroot.lab"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == module_info.name and not name.startswith("_")
                    and module_info.name != "encroot.errors"):
                outside.append(f"{module_info.name}.{name}")
    # Killed and Replaced are the test seam's simulated process death and exec, not
    # errors encroot raises.
    assert outside == ["encroot.zfs.testing.Killed", "encroot.zfs.testing.Replaced"]
    for name in encroot.errors.__all__:
        assert issubclass(getattr(encroot.errors, name), encroot.errors.EncrootError), name
