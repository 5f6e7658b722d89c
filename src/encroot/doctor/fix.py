"""``encroot doctor --fix``: the repairs that cannot lose data or access, and why not others.

``plan_fixes`` sorts every finding into a ``Fix`` (with the structured
action and the ``Command`` lines it amounts to) or a ``NotRepaired`` with the
reason.  ``apply_fixes`` acts on the structured fix (never on printed text),
checking its precondition again where encroot's own recovery does so.

Re-parenting (``own-root-could-inherit``) needs, besides both keys loaded and
no raw-receive signs (OpenZFS 12614), proof that the dataset's key is the
parent's: the same ``file://`` keylocation as the parent's encryption root,
or the parent's key file opens it (``zfs load-key -n -L file://...``).  A
child keyed on purpose with its own (say, prompted) key is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

from ..errors import EncrootError, ZfsError
from ..names import DatasetName
from ..owned import MARKER_PROPERTIES, lookalike_target
from ..records import field, record
from ..zfs import Command, Zfs
from .audit import AuditState, Finding, encroot_command, same_key_source, zfs_command

__all__ = ["Fix", "FixAction", "FixOutcome", "FixPlan", "NotRepaired", "apply_fixes",
           "plan_fixes"]


class FixAction(Enum):
    """What a fix does; ``apply_fixes`` dispatches on it."""

    REPARENT = "reparent"
    RECOVER_ROTATION = "recover-rotation"
    RECOVER_RECEIVE = "recover-receive"


@record(frozen=True)
class Fix:
    """One repair: ``action`` on ``subject``; ``commands`` is what it amounts to (``-n``)."""

    finding: Finding
    action: FixAction
    subject: str
    commands: tuple[Command, ...]

    @property
    def command(self) -> str:
        """The fix as one shell line."""
        return " && ".join(c.shell_line() for c in self.commands)

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.finding.dataset, "code": self.finding.code,
                "command": self.command, "argv": [list(c.argv) for c in self.commands]}


@record(frozen=True)
class NotRepaired:
    """A finding ``--fix`` leaves to the user, and why."""

    finding: Finding
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"dataset": self.finding.dataset, "code": self.finding.code,
                "reason": self.reason}


@record
class FixPlan:
    fixes: list[Fix] = field(default_factory=list)
    not_repaired: list[NotRepaired] = field(default_factory=list)


KeyOpens = Callable[[str, str], bool]
# Datasets with these findings (and their descendants) are never re-parented.
_HANDS_OFF = ("lookalike-unowned", "operation-in-progress", "leftover-temporary",
              "migration-staging")
# Why --fix leaves each kind of finding alone (re-parenting and leftovers are decided
# case by case below).
_LEFT_TO_THE_USER = {
    "keylocation-unusable": "needs a key: put the right key at the keylocation",
    "prompt-key-at-boot": "a boot-time unlock is the system's configuration, not a dataset "
                          "change",
    "key-unavailable": "needs a key: zfs load-key asks for it",
    "key-loaded-not-mounted": "mounting is left to you (it may be unmounted on purpose)",
    "plaintext-under-encrypted": "needs a copy received into an encrypted dataset",
    "raw-replica-reparented": "raw replica: only a fresh full stream repairs it (OpenZFS "
                              "12614)",
    "weak-pbkdf2iters": "needs the passphrase: zfs change-key asks for it",
    "encryption-feature-disabled": "changes the pool's on-disk format; enable it yourself",
    "migration-staging": "a migration in progress: finish it with encroot migrate",
    "lookalike-unowned": "not encroot's: encroot never touches it",
    "old-copy-kept": "destroying the kept copy is your decision",
}


def plan_fixes(findings: Sequence[Finding], state: AuditState, *,
               key_opens: KeyOpens | None = None) -> FixPlan:
    """Every finding as a fix whose repair cannot lose data or access, or as not repaired
    with the reason.

    ``key_opens(dataset, "file://...")`` says whether that key file opens the
    dataset (``zfs load-key -n -L``); without it only the same keylocation proves
    that a key is the parent's.
    """
    plan = FixPlan()
    hands_off = {f.dataset for f in findings if f.code in _HANDS_OFF}
    hands_off |= {name for name in state.props if _carries_encroot_state(state, name)}
    for finding in findings:
        name = finding.dataset
        if finding.code == "own-root-could-inherit":
            held = next((h for h in hands_off if name == h or name.startswith(h + "/")), None)
            reason = (f"part of {held}, which --fix leaves alone (see its finding)" if held
                      else _reparent_refusal(state, name, key_opens))
            if reason is None:
                plan.fixes.append(Fix(finding, FixAction.REPARENT, name,
                                      (zfs_command("change-key", "-i", name),)))
            else:
                plan.not_repaired.append(NotRepaired(finding, reason))
        elif finding.code == "pending-rotation":
            plan.fixes.append(Fix(finding, FixAction.RECOVER_ROTATION, name,
                                  (encroot_command("recover", name),)))
        elif finding.code == "leftover-temporary" and finding.fix and \
                finding.fix[0].argv[:3] == ("encroot", "receive", "--recover"):
            target = finding.fix[0].argv[3]
            plan.fixes.append(Fix(finding, FixAction.RECOVER_RECEIVE, target,
                                  (encroot_command("receive", "--recover", target),)))
        elif finding.code == "leftover-temporary" and finding.fix and \
                finding.fix[0].argv[1] in ("encrypt", "reencrypt", "decrypt"):
            plan.not_repaired.append(NotRepaired(
                finding, "a conversion: continue it with its next phase or finish or undo it "
                         "with --recover (" + finding.fix[0].shell_line() + ")"))
        elif finding.code == "leftover-temporary":
            plan.not_repaired.append(NotRepaired(
                finding, "needs the migration's keys and options: run the phase again"))
        elif finding.code == "operation-in-progress":
            plan.not_repaired.append(NotRepaired(finding, f"owner alive: {finding.holder}"))
        else:
            plan.not_repaired.append(NotRepaired(
                finding, _LEFT_TO_THE_USER.get(finding.code, "no safe automatic repair")))
    return plan


def _carries_encroot_state(state: AuditState, name: str) -> bool:
    """A marker of encroot's (parsed or not) is set on it, or it is named like encroot's."""
    return lookalike_target(name) is not None or any(
        state.marker(name, prop) is not None for prop in MARKER_PROPERTIES)


def _reparent_refusal(state: AuditState, name: str, key_opens: KeyOpens | None) -> str | None:
    """Why ``name`` may not be re-parented now, or None when it may."""
    parent = state.parent(name)
    if parent is None:
        return "a pool's root has no parent"
    if state.raw_receive_signs(name):
        return ("raw replica: re-parenting would break later raw incrementals, OpenZFS "
                "12614")
    if not same_key_source(state, name):
        return ("its key source differs from the parent's: a separate key on purpose is "
                "left alone")
    if state.get(name, "keystatus") != "available" or \
            state.get(parent, "keystatus") != "available":
        return f"needs a key: load the keys of {name} and {parent} first"
    parent_root = state.get(parent, "encryptionroot")
    location = state.get(parent_root, "keylocation")
    if not location.startswith("file://"):
        return (f"its key is not provably the parent's ({parent_root}'s key is prompted, "
                "so encroot cannot compare them); re-parent by hand if it is")
    if state.get(name, "keylocation") == location:
        return None
    if key_opens is not None and key_opens(name, location):
        return None
    return (f"its key is not provably the parent's ({location} does not open it): a "
            "separate key on purpose is left alone; re-parent by hand if it is not")


def key_opens_with(zfs: Zfs) -> KeyOpens:
    """``key_opens`` for ``plan_fixes``: ``zfs load-key -n -L LOCATION DATASET``."""
    return zfs.check_key_at


@record(frozen=True)
class FixOutcome:
    fix: Fix
    done: bool
    detail: str


def apply_fixes(zfs: Zfs, fixes: Sequence[Fix]) -> list[FixOutcome]:
    """Apply each fix; a failing one is reported and the others go on."""
    from ..receive import recover as recover_receive
    from ..rotate import recover as recover_rotation

    outcomes = []
    for fix in fixes:
        try:
            match fix.action:
                case FixAction.REPARENT:
                    zfs.change_key(fix.subject, inherit=True)
                    detail = f"{fix.subject} now inherits its key"
                case FixAction.RECOVER_ROTATION:
                    result = recover_rotation(zfs, fix.subject)
                    detail = f"rotation {result.action}: {result.evidence}"
                case FixAction.RECOVER_RECEIVE:
                    # never unmounts a tree in use: --fix must not cost access
                    report = recover_receive(zfs, DatasetName(fix.subject), unmount_old=False)
                    detail = "; ".join(report.actions) or "nothing left to do"
            outcomes.append(FixOutcome(fix, True, detail))
        except (EncrootError, ZfsError) as exc:
            outcomes.append(FixOutcome(fix, False, str(exc)))
    return outcomes
