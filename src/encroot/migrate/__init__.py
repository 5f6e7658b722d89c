"""``encroot migrate``: move an encrypted root, its children and snapshots to another pool, raw.

``model`` holds the request and the state read from both pools; ``plan``
turns them into a phase plan (pure; its data types in ``steps``, the cutover
steps in ``finish``, where datasets land in ``landing``); ``run`` reads ZFS and
executes; ``files`` copies and hashes files.
docs/design.md explains the phases, the order (every stream before any
re-parenting) and how an interrupted phase continues.
"""

from .model import PHASES, MigrateRefused, MigrateRequest, MigrateState
from .plan import plan_phase
from .run import (
    KeyReader,
    MigrateResult,
    PhaseResult,
    Progress,
    VerificationFailed,
    migrate,
    plan_migration,
    read_state,
)
from .steps import MigrateAction, PhasePlan, Refusal, Step, Transfer

__all__ = [
    "PHASES",
    "KeyReader",
    "MigrateAction",
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
