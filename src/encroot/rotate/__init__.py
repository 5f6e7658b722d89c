"""``encroot change-key``: rotate a key and user properties as one step.

``plan`` (pure) builds a ``RotationPlan`` from requests, ZFS state and the
detected strategies; ``run`` reads state, executes plans and recovers
interrupted ones; ``journal`` is the crash-safe protocol used where ZFS has
no atomic primitive; ``lua`` generates the channel programs.
"""

from .journal import Marker
from .plan import (
    STRATEGIES,
    Capabilities,
    ChangeKeyRequest,
    RotationPlan,
    RotationRefused,
    StrategyUnavailable,
)
from .run import (
    ChangeKeyResult,
    PendingRotation,
    RecoveryResult,
    RotationFailed,
    plan_for,
    recover,
    rotate_keys,
    user_properties,
)

__all__ = [
    "STRATEGIES",
    "Capabilities",
    "ChangeKeyRequest",
    "ChangeKeyResult",
    "Marker",
    "PendingRotation",
    "RecoveryResult",
    "RotationFailed",
    "RotationPlan",
    "RotationRefused",
    "StrategyUnavailable",
    "plan_for",
    "recover",
    "rotate_keys",
    "user_properties",
]
