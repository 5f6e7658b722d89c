"""``encroot doctor`` and ``encroot status``: audit encryption hierarchies, repair the safe part.

Three parts, like every operation: ``audit`` reads (``read_audit_state``) and
checks (``audit``, pure); ``owned`` reports encroot's own state, recognised
only through ``encroot.owned``; ``fix`` sorts findings into safe repairs and
the ones left to the user, with the reason, and applies the repairs.
"""

from .audit import (
    SEVERITY_ORDER,
    STATUS_COLUMNS,
    AuditState,
    Finding,
    audit,
    history_facts,
    key_file_problem,
    read_audit_state,
    status_rows,
)
from .fix import (
    Fix,
    FixAction,
    FixOutcome,
    FixPlan,
    NotRepaired,
    apply_fixes,
    key_opens_with,
    plan_fixes,
)

__all__ = [
    "SEVERITY_ORDER",
    "STATUS_COLUMNS",
    "AuditState",
    "Finding",
    "Fix",
    "FixAction",
    "FixOutcome",
    "FixPlan",
    "NotRepaired",
    "apply_fixes",
    "audit",
    "history_facts",
    "key_file_problem",
    "key_opens_with",
    "plan_fixes",
    "read_audit_state",
    "status_rows",
]
