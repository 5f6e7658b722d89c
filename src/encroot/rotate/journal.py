"""The rotation journal: what encroot writes before a key change, and how a
pending one is resolved from ZFS's own evidence.

Protocol (docs/design.md, "Key rotation"):

1. *intent*: one channel program sets ``encroot:rotation`` (this module's
   ``Marker``, JSON) and stages each new user property value ``P=V`` as
   ``encroot:P=V``, on every dataset of the batch, in one transaction group;
2. ``zfs change-key`` on each dataset;
3. *finish*: one channel program copies the staged values onto their
   properties and removes the staged copies and the marker (commit), or
   only removes them (abort), again in one transaction group.

The user-visible properties change only in step 3, atomically.  A marker
found later means step 2's outcome is unknown; ``decide`` tells from
evidence whether the key changed (commit) or not (abort), or says that it
cannot tell without a key.  Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from ..owned import Owner, RotationJournal
from ..records import record

__all__ = ["Decision", "Marker", "Owner", "decide", "history_shows_change"]

Verdict = Literal["commit", "abort", "unknown"]


# The journal marker is defined with every other marker in encroot.owned.
Marker = RotationJournal


@record(frozen=True)
class Decision:
    """What to do with a pending journal, and the evidence for it."""

    verdict: Verdict
    evidence: str


def decide(marker: RotationJournal, dataset: str, now: Mapping[str, str], *,
           new_key_matches: bool | None = None, old_key_matches: bool | None = None,
           history: str | None = None) -> Decision:
    """Did the interrupted rotation's ``zfs change-key`` take effect?

    Args:
        now: the dataset's current keyformat, pbkdf2salt, pbkdf2iters, encryptionroot.
        new_key_matches / old_key_matches: result of ``zfs load-key -n`` with
            the rotation's new or old key, when the caller supplied one.
        history: ``zpool history -i`` text of the pool, when read.

    Only evidence that proves one outcome is used: the key itself, or a
    property that only a change-key can alter.  "unknown" means a key is needed.
    """
    if new_key_matches is not None:
        return Decision("commit" if new_key_matches else "abort",
                        f"the new key {'is' if new_key_matches else 'is not'} the current key "
                        "(zfs load-key -n)")
    if old_key_matches is not None:
        return Decision("abort" if old_key_matches else "commit",
                        f"the old key {'is still' if old_key_matches else 'is no longer'} "
                        "the current key (zfs load-key -n)")
    became_root = marker.old_encryptionroot not in ("", dataset)  # a child made its own root
    if marker.inherit or became_root:
        changed = now.get("encryptionroot") != marker.old_encryptionroot
        return Decision("commit" if changed else "abort",
                        f"encryptionroot is {now.get('encryptionroot')!r} "
                        f"(was {marker.old_encryptionroot!r})")
    if now.get("keyformat") != marker.old_keyformat:
        return Decision("commit", f"keyformat changed from {marker.old_keyformat} "
                                  f"to {now.get('keyformat')}")
    if marker.new_keyformat not in (None, marker.old_keyformat):
        return Decision("abort", f"keyformat is still {marker.old_keyformat} (the change-key "
                                 f"would have made it {marker.new_keyformat})")
    if marker.old_keyformat == "passphrase":
        changed = now.get("pbkdf2salt") != marker.old_pbkdf2salt
        return Decision("commit" if changed else "abort",
                        "pbkdf2salt " + ("changed (every passphrase change draws a new salt)"
                                         if changed else "is unchanged (a passphrase change "
                                         "would have drawn a new salt)"))
    if marker.new_pbkdf2iters not in (None, marker.old_pbkdf2iters):
        changed = now.get("pbkdf2iters") == marker.new_pbkdf2iters
        return Decision("commit" if changed else "abort",
                        f"pbkdf2iters is {now.get('pbkdf2iters')} (was {marker.old_pbkdf2iters}, "
                        f"the change-key sets {marker.new_pbkdf2iters})")
    if history is not None and history_shows_change(history, marker.id, dataset):
        return Decision("commit", "pool history records the zfs change-key after the journal")
    return Decision("unknown", "the key format stayed the same and pool history has no record "
                               "of the change-key; a key is needed to tell")


def history_shows_change(history: str, journal_id: str, dataset: str) -> bool:
    """True when ``zpool history -i`` records ``zfs change-key ... DATASET`` after the journal.

    libzfs logs a command line only after the command succeeded, so such a
    line proves the key changed.  Its absence proves nothing: a crash can
    come between the change and the log.
    """
    start = history.find(journal_id)
    if start < 0:
        return False
    command = re.compile(r"^\S+ zfs change-key(?: \S+)* " + re.escape(dataset) + r"(?: \[.*\])?$")
    return any(command.match(line) for line in history[start:].splitlines())
