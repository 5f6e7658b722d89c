"""Reading what a rotation needs from ZFS: key properties, journals, strategies.

One ``zfs get`` of named properties per batch (``read_state``); the
strategies this system offers are probed once per ``Zfs`` and cached
(``detect_capabilities``).  Nothing here changes ZFS state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import DatasetNotFound, PermissionDenied, ZfsError
from ..names import DatasetName
from ..owned import ROTATION_MARKER, ROTATION_STAGE_PREFIX
from ..zfs import Zfs
from .plan import STATE_PROPERTIES, Capabilities, ChangeKeyRequest, DatasetState

__all__ = ["detect_capabilities", "journal_properties", "read_state", "staged_values"]

_CAPABILITY_PROBE = "return {change_key = type(zfs.sync.change_key)}\n"


def read_state(zfs: Zfs, datasets: Iterable[str],
               user_properties: Iterable[str] = ()) -> dict[str, DatasetState]:
    """Key properties, the journal marker and the named user properties, in one ``zfs get``.

    The properties are named, not ``all``: ``all`` leaves out hidden ones
    such as pbkdf2salt.  Datasets that do not exist are absent from the result.

    Raises:
        ZfsError: the read failed for another reason than a missing dataset.
    """
    wanted = list(dict.fromkeys(datasets))
    names = list(dict.fromkeys([*STATE_PROPERTIES, ROTATION_MARKER, *user_properties]))
    try:
        table = zfs.get(wanted, names, use_json=False) if wanted else None
    except DatasetNotFound:
        existing = [n for n in wanted if zfs.exists(n)]
        table = zfs.get(existing, names, use_json=False) if existing else None
    if table is None:
        return {}
    state: dict[str, DatasetState] = {}
    for name in table:
        values = table[name]
        props = {p: values[p].value for p in STATE_PROPERTIES if p in values}
        user = {p: v.value for p, v in values.items() if ":" in p and v.source == "local"}
        state[name] = DatasetState(name, props, user)
    return state


def journal_properties(requests: Sequence[ChangeKeyRequest]) -> list[str]:
    """The user properties a batch sets, and their staged copies."""
    names = {p for r in requests for p in r.properties}
    return sorted(names | {ROTATION_STAGE_PREFIX + p for p in names})


def staged_values(zfs: Zfs, name: str) -> dict[str, str]:
    """A pending journal's staged values, read from all local user properties."""
    table = zfs.get([name], ("all",), sources=("local",), use_json=False)
    values = {p: v.value for p, v in table[name].items()} if name in table else {}
    return DatasetState(name, {}, values).staged()


def detect_capabilities(zfs: Zfs, dataset: str) -> Capabilities:
    """Probe which strategies exist; ``dataset`` must be encrypted and not a clone.

    native: ``zfs change-key`` accepts user properties (a refused probe says so).
    channel-program: ``zfs.sync.change_key`` exists *and* the key can travel
    as ``hidden_args`` (kept out of pool history); the ``zfs program``
    command cannot pass hidden arguments, so encroot never offers it on a
    system where that is its only way to run a program.
    journal: ``zfs program`` runs here (it needs root).

    Raises:
        ZfsError: the change-key probe was accepted (it must never be) or failed oddly.
    """
    cached = zfs.features.get("rotation strategies")
    if isinstance(cached, Capabilities):
        return cached
    reasons: dict[str, str] = {}
    native = zfs.change_key_accepts_user_properties(dataset)
    if not native:
        reasons["native"] = ("zfs change-key here accepts only keyformat, keylocation and "
                             "pbkdf2iters (user properties arrived after OpenZFS 2.4)")
    journal = True
    try:
        probe = zfs.program(DatasetName(dataset).pool, _CAPABILITY_PROBE, read_only=True)
        has_change_key = isinstance(probe, dict) and probe.get("change_key") == "function"
    except (PermissionDenied, ZfsError) as exc:
        journal, has_change_key = False, False
        reasons["journal"] = f"zfs program does not run here ({exc})"
    reasons["channel-program"] = (
        "zfs program cannot pass the key as hidden_args, so the key would be recorded in "
        "pool history" if has_change_key else
        "channel programs here have no zfs.sync.change_key (OpenZFS 2.1 to 2.4 do not)")
    capabilities = Capabilities(native=native, channel_program=False, journal=journal,
                                reasons=reasons)
    zfs.features["rotation strategies"] = capabilities
    return capabilities
