"""``encroot migrate``: move an encrypted root, its children and snapshots to another pool, raw.

``model`` holds the request and the state read from both pools; ``plan``
turns them into a phase plan (pure); ``run`` reads ZFS and executes.
docs/design.md explains the phases, the order (every stream before any
re-parenting) and how an interrupted phase continues.
"""

from .model import PHASES, MigrateRefused, MigrateRequest, MigrateState
from .plan import PhasePlan, Refusal, Step, Transfer, plan_phase
from .run import (
    MigrateResult,
    PhaseResult,
    Progress,
    VerificationFailed,
    migrate,
    plan_migration,
    read_state,
)

__all__ = [
    "PHASES",
    "MigrateRefused",
    "MigrateRequest",
    "MigrateResult",
    "MigrateState",
    "PhasePlan",
    "PhaseResult",
    "Progress",
    "Refusal",
    "Step",
    "Transfer",
    "VerificationFailed",
    "migrate",
    "plan_migration",
    "plan_phase",
    "read_state",
]
