"""encroot: the life cycle of OpenZFS native encryption.

The public API is what ``__all__`` lists; everything else may change.
``encroot.zfs`` is the command layer (the only code that starts zfs/zpool),
``encroot.lab`` the QEMU lab with real OpenZFS.
"""

from ._version import __version__
from .dataset import ChangeKey, Dataset, change_keys, change_keys_async
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
    PermissionDenied,
    PoolNotFound,
    ZfsError,
    ZfsUnavailable,
)
from .keys import Key
from .names import DatasetName, PoolName, SnapshotName, UserPropertyName
from .rotate import (
    ChangeKeyResult,
    PendingRotation,
    RecoveryResult,
    RotationFailed,
    RotationRefused,
    StrategyUnavailable,
)
from .zfs import Zfs

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
