"""encroot: the life cycle of OpenZFS native encryption.

The public API is what ``__all__`` lists; everything else may change.
``encroot.zfs`` is the command layer (the only code that starts zfs/zpool),
``encroot.lab`` the QEMU lab with real OpenZFS.
"""

from __future__ import annotations

from ._lazy import lazy_attributes
from ._version import __version__
from .errors import (
    DatasetBusy,
    DatasetExists,
    DatasetNotFound,
    EncrootError,
    EncryptionBoundary,
    FeatureDisabled,
    IncorrectKey,
    InputError,
    InvalidKey,
    InvalidName,
    InvalidProperty,
    KeyAlreadyLoaded,
    KeyNotLoaded,
    LabError,
    NotEncrypted,
    NotEncryptionRoot,
    OutOfSpace,
    PendingRotation,
    PermissionDenied,
    PoolNotFound,
    RotationFailed,
    RotationRefused,
    StrategyUnavailable,
    ZfsError,
    ZfsUnavailable,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from .dataset import ChangeKey, Dataset, change_keys, change_keys_async
    from .keys import Key
    from .names import DatasetName, PoolName, SnapshotName, UserPropertyName
    from .rotate import ChangeKeyResult, RecoveryResult
    from .zfs import Zfs

# Imported on first use (PEP 562), so that `encroot --version` or a plain
# `encroot receive` does not load every operation: each CLI start pays for
# what it runs, which matters most in the lab's emulated guest.
_LAZY = {
    **dict.fromkeys(("ChangeKey", "Dataset", "change_keys", "change_keys_async"), ".dataset"),
    "Key": ".keys",
    **dict.fromkeys(("DatasetName", "PoolName", "SnapshotName", "UserPropertyName"), ".names"),
    **dict.fromkeys(("ChangeKeyResult", "RecoveryResult"), ".rotate"),
    "Zfs": ".zfs",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "ChangeKey",
    "ChangeKeyResult",
    "Dataset",
    "DatasetBusy",
    "DatasetExists",
    "DatasetName",
    "DatasetNotFound",
    "EncrootError",
    "EncryptionBoundary",
    "FeatureDisabled",
    "IncorrectKey",
    "InputError",
    "InvalidKey",
    "InvalidName",
    "InvalidProperty",
    "Key",
    "KeyAlreadyLoaded",
    "KeyNotLoaded",
    "LabError",
    "NotEncrypted",
    "NotEncryptionRoot",
    "OutOfSpace",
    "PendingRotation",
    "PermissionDenied",
    "PoolName",
    "PoolNotFound",
    "RecoveryResult",
    "RotationFailed",
    "RotationRefused",
    "SnapshotName",
    "StrategyUnavailable",
    "UserPropertyName",
    "Zfs",
    "ZfsError",
    "ZfsUnavailable",
    "__version__",
    "change_keys",
    "change_keys_async",
]
