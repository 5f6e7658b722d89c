"""``encroot encrypt|reencrypt|decrypt``: convert a dataset tree's encryption in place.

ZFS cannot change ``encryption`` in place.  encroot receives a non-raw copy
of the tree, dataset by dataset, into the sibling ``X.encroot-convert`` with
the new encryption (phases initial and catch-up while the tree stays in
use), then at cutover unmounts the old tree, sends the last incrementals,
verifies every snapshot GUID and the encryption, swaps by renames (the
owned-state protocol of ``encroot receive``, with convert's own markers),
mounts the new tree where the old one was and only then destroys the old
one (or keeps it with ``--keep-old``).

Parts: ``model`` (request, state), ``read`` (bulk reads), ``plan`` (pure),
``steps`` (the steps and the commands they run, pure), ``run`` (phases),
``swap`` (verification, swap, recovery), ``busy`` (who holds a mount point).
"""

from collections.abc import Callable

from ..zfs import Zfs
from .model import PHASES, ConvertRefused, ConvertRequest, ConvertState, Node, Snap, Tree
from .plan import PhasePlan, Transfer, plan_phase, send_order
from .read import read_state
from .run import ConvertResult, PhaseResult, convert, hygiene, plan_conversion
from .steps import ConvertAction, Step, SwapAction
from .swap import SwapReport, finish, verify

__all__ = [
    "PHASES",
    "ConvertAction",
    "ConvertRefused",
    "ConvertRequest",
    "ConvertResult",
    "ConvertState",
    "Node",
    "PhasePlan",
    "PhaseResult",
    "Snap",
    "Step",
    "SwapAction",
    "SwapReport",
    "Transfer",
    "Tree",
    "convert",
    "finish",
    "hygiene",
    "plan_conversion",
    "plan_phase",
    "read_state",
    "recover",
    "send_order",
    "verify",
]


def recover(zfs: Zfs, request: ConvertRequest, *,
            say: Callable[[str], None] = lambda line: None) -> SwapReport:
    """``--recover``: finish a verified conversion, undo an unverified one (see ``swap``)."""
    return finish(zfs, request, undo=True, say=say)
