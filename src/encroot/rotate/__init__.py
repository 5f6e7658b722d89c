"""``encroot change-key``: rotate a key and user properties as one step.

``plan`` (pure) builds a ``RotationPlan`` from requests, ZFS state and the
detected strategies, whose ``steps`` (``steps``, pure) carry the commands
they run; ``read`` reads state and probes strategies; ``run`` executes
plans; ``recover`` resolves the journal an interrupted run left;
``journal`` is the crash-safe protocol used where ZFS has no atomic
primitive; ``lua`` generates the channel programs.
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
from .read import read_state
from .recover import RecoveryPlan, RecoveryResult, plan_recovery, recover, user_properties
from .run import ChangeKeyResult, PendingRotation, RotationFailed, execute, plan_for, rotate_keys
from .steps import RotationAction, RotationStep

__all__ = [
    "STRATEGIES",
    "Capabilities",
    "ChangeKeyRequest",
    "ChangeKeyResult",
    "Marker",
    "PendingRotation",
    "RecoveryPlan",
    "RecoveryResult",
    "RotationAction",
    "RotationFailed",
    "RotationPlan",
    "RotationRefused",
    "RotationStep",
    "StrategyUnavailable",
    "execute",
    "plan_for",
    "plan_recovery",
    "read_state",
    "recover",
    "rotate_keys",
    "user_properties",
]
