"""Requests, state and plans for ``encroot change-key`` (pure: no ZFS here).

A ``ChangeKeyRequest`` is validated when it is made (bad input changes
nothing); ``plan_rotation`` turns requests plus the state read from ZFS and
the detected ``Capabilities`` into a ``RotationPlan``: the strategy, each
dataset's change-key arguments, the journal entries and what verification
expects.  ``rotate.run`` executes plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, cast

from ..errors import InputError, InvalidProperty, RotationRefused, StrategyUnavailable
from ..keys import Key, KeyFormat
from ..names import DatasetName, validate_user_properties
from ..owned import ROTATION_MARKER, ROTATION_STAGE_PREFIX
from ..records import field, record
from ..zfs import ZfsCommands
from .journal import Marker, Owner
from .steps import RotationStep, rotation_steps

__all__ = [
    "STRATEGIES",
    "Capabilities",
    "ChangeKeyRequest",
    "DatasetState",
    "Rotation",
    "RotationPlan",
    "RotationRefused",
    "StrategyUnavailable",
    "plan_rotation",
]

Strategy = Literal["native", "channel-program", "journal", "plain"]
STRATEGIES = ("auto", "native", "channel-program", "journal")
KEYFORMATS = ("hex", "raw", "passphrase")
MIN_PBKDF2_ITERS = 100_000  # libzfs: MIN_PBKDF2_ITERATIONS
# What plan_rotation needs to know about each dataset (and -i parents).
_ZFS_ON_PATH = ZfsCommands()
STATE_PROPERTIES = ("type", "encryption", "encryptionroot", "keyformat", "keylocation",
                    "keystatus", "pbkdf2salt", "pbkdf2iters", "origin")


@record(frozen=True, eq=False)
class ChangeKeyRequest:
    """One dataset's key change, as ``zfs change-key`` options plus user properties.

    Attributes:
        key: the new key, None with ``inherit`` or when ZFS reads the new
            key from a ``file://`` keylocation.
        keyformat: None keeps the key's own format (or the current one).
        load_key: the current key, loaded first when it is not (``-l``).
    """

    dataset: DatasetName
    key: Key | None = None
    properties: Mapping[str, str] = field(default_factory=dict)
    keyformat: KeyFormat | None = None
    keylocation: str | None = None
    pbkdf2iters: int | None = None
    inherit: bool = False
    load_key: Key | None = None
    strategy: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", DatasetName(self.dataset))
        properties = validate_user_properties(self.properties)
        for name in properties:
            if name.startswith(ROTATION_STAGE_PREFIX):
                raise InvalidProperty(f"user property {name}: the namespace 'encroot:' is "
                                      "reserved for encroot's own journal", subject=name)
        object.__setattr__(self, "properties", properties)
        if self.strategy not in STRATEGIES:
            raise InputError(f"strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        if self.inherit:
            self._check_inherit()
        else:
            self._check_new_key()

    def _check_inherit(self) -> None:
        given = [name for name, value in (("a key", self.key), ("keyformat", self.keyformat),
                                          ("keylocation", self.keylocation),
                                          ("pbkdf2iters", self.pbkdf2iters)) if value is not None]
        if given:
            raise InputError(f"change-key -i (inherit the parent's key) takes no "
                             f"{', '.join(given)}")

    def _check_new_key(self) -> None:
        if self.keyformat is not None and self.keyformat not in KEYFORMATS:
            raise InputError(f"keyformat {self.keyformat!r}: use hex, raw or passphrase")
        if self.key is not None and self.keyformat not in (None, self.key.format):
            raise InputError(f"keyformat={self.keyformat} but the key given is a "
                             f"{self.key.format} key")
        location = self.keylocation
        if location is not None and location != "prompt" and not location.startswith("file:///"):
            raise InputError(f"keylocation {location!r}: use prompt or file:///absolute/path")
        if self.key is None and location == "prompt":
            raise InputError("keylocation=prompt needs the new key (give a key)")
        if self.pbkdf2iters is not None:
            if isinstance(self.pbkdf2iters, bool) or not isinstance(self.pbkdf2iters, int):
                raise InputError(f"pbkdf2iters {self.pbkdf2iters!r}: must be a whole number")
            if self.pbkdf2iters < MIN_PBKDF2_ITERS:
                raise InputError(f"pbkdf2iters {self.pbkdf2iters}: ZFS requires at least "
                                 f"{MIN_PBKDF2_ITERS}")

    @property
    def new_format(self) -> KeyFormat | None:
        """The keyformat asked for: the key's own, the option's, or None (keep)."""
        return self.key.format if self.key is not None else self.keyformat


@record(frozen=True)
class DatasetState:
    """What ZFS reported for one dataset: key properties, and encroot's journal."""

    name: str
    props: Mapping[str, str]
    user: Mapping[str, str]  # user properties set locally on the dataset

    @property
    def marker(self) -> str | None:
        return self.user.get(ROTATION_MARKER)

    def staged(self) -> dict[str, str]:
        """Staged values of a pending journal, by target property."""
        cut = len(ROTATION_STAGE_PREFIX)
        return {name[cut:]: value for name, value in self.user.items()
                if name.startswith(ROTATION_STAGE_PREFIX) and ":" in name[cut:]}


@record(frozen=True)
class Capabilities:
    """Which strategies this system offers, each with the reason when it does not."""

    native: bool
    channel_program: bool
    journal: bool
    reasons: Mapping[str, str] = field(default_factory=dict)

    def offers(self, strategy: str) -> bool:
        return {"native": self.native, "channel-program": self.channel_program,
                "journal": self.journal}[strategy]


@record(frozen=True)
class Rotation:
    """One dataset's planned change: the zfs change-key options and the journal."""

    dataset: str
    pool: str
    change_options: Mapping[str, str]
    inherit: bool
    stdin_key: bool
    keylocation: str  # where zfs reads the new key: prompt (stdin) or a file:// URI
    properties: Mapping[str, str]
    marker: Marker | None
    load_key: bool
    expect_keyformat: str
    expect_encryptionroot: str


@record(frozen=True)
class RotationPlan:
    """A batch's strategy, each dataset's change, the checks made and the steps to run.

    ``steps`` hold the commands the executor runs (``encroot.rotate.steps``).
    """

    strategy: Strategy
    rotations: tuple[Rotation, ...]
    checks: tuple[str, ...]
    steps: tuple[RotationStep, ...] = ()

    def lines(self) -> list[str]:
        """The plan as ``-n`` prints it."""
        lines = [f"strategy: {self.strategy}", "checks:"]
        lines += [f"  ok  {check}" for check in self.checks]
        lines.append("steps:")
        for number, step in enumerate(self.steps, 1):
            first, *commands = step.lines()
            lines += [f"  {number}. {first}"] + [f"  {line}" for line in commands]
        return lines

    def as_json(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "checks": list(self.checks),
            "steps": [step.to_json() for step in self.steps],
            "datasets": [{
                "dataset": r.dataset, "change_key_options": dict(r.change_options),
                "inherit": r.inherit, "properties": dict(r.properties),
                "journal": r.marker is not None, "load_key": r.load_key,
                "expect": {"keyformat": r.expect_keyformat,
                           "encryptionroot": r.expect_encryptionroot},
            } for r in self.rotations],
        }


def choose_strategy(requested: str, capabilities: Capabilities, has_properties: bool) -> Strategy:
    """auto: native, then channel-program, then journal.  An explicit choice must exist."""
    if requested != "auto":
        if not capabilities.offers(requested):
            reason = capabilities.reasons.get(requested, "not offered here")
            raise StrategyUnavailable(f"strategy {requested}: not available on this system "
                                      f"({reason})")
    if not has_properties:
        return "plain"
    if requested != "auto":
        return cast(Strategy, requested)  # one of STRATEGIES, checked by the request
    for strategy in ("native", "channel-program", "journal"):
        if capabilities.offers(strategy):
            return strategy
    raise StrategyUnavailable("no strategy can change a key together with properties here: "
                              + "; ".join(f"{k}: {v}" for k, v in capabilities.reasons.items()))


def plan_rotation(requests: Sequence[ChangeKeyRequest], state: Mapping[str, DatasetState],
                  capabilities: Capabilities, *, owner: Owner, started: str,
                  new_id: Callable[[], str],
                  commands: ZfsCommands = _ZFS_ON_PATH) -> RotationPlan:
    """Check every precondition, then plan the batch; raise RotationRefused on the first failure.

    ``state`` holds each dataset and, for ``-i``, its parent.  ``owner``,
    ``started`` and ``new_id`` fill the journal markers (inputs, so that
    planning stays pure); ``commands`` builds the steps' commands
    (``Zfs.commands`` names the binary the executor runs).

    Raises:
        InputError: a dataset named twice, or several strategies in one batch.
        StrategyUnavailable: the strategy asked for does not exist here.
        RotationRefused: a dataset's precondition failed (nothing was changed).
    """
    names = [r.dataset for r in requests]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"dataset {duplicates[0]}: named twice in one change-key")
    requested = {r.strategy for r in requests}
    if len(requested) > 1:
        raise InputError("one change-key uses one strategy for all its datasets")
    has_properties = any(r.properties for r in requests)
    strategy = choose_strategy(requested.pop(), capabilities, has_properties)
    checks: list[str] = []
    rotations = tuple(_plan_one(r, state, strategy, checks, owner, started, new_id)
                      for r in requests)
    return RotationPlan(strategy, rotations, tuple(checks),
                        rotation_steps(strategy, rotations, commands=commands))


def _plan_one(request: ChangeKeyRequest, state: Mapping[str, DatasetState], strategy: Strategy,
              checks: list[str], owner: Owner, started: str,
              new_id: Callable[[], str]) -> Rotation:
    name = request.dataset
    current = _check_dataset(request, state)
    props = current.props
    if request.inherit:
        parent_root = _check_inherit_parent(request, state)
        options: dict[str, str] = {}
        expect_format = state[str(name.parent)].props.get("keyformat", "")
        expect_root = parent_root
        location = ""
    else:
        options, location = _new_key_options(request, props)
        expect_format = options.get("keyformat", props.get("keyformat", ""))
        expect_root = name
    own_root = props.get("encryptionroot") == name
    checks.append(f"{name}: encrypted, "
                  + ("an encryption root" if own_root else
                     f"inherits from {props.get('encryptionroot')} and becomes its own root")
                  + ", not a clone, key "
                  + ("loaded" if props.get("keystatus") == "available" else "loaded first (-l)")
                  + ", no pending rotation")
    marker = None
    if strategy == "journal" and request.properties:
        marker = Marker(id=new_id(), started=started, owner=owner, inherit=request.inherit,
                        old_keyformat=props.get("keyformat", ""),
                        old_pbkdf2salt=props.get("pbkdf2salt", ""),
                        old_pbkdf2iters=props.get("pbkdf2iters", ""),
                        old_encryptionroot=props.get("encryptionroot", ""),
                        new_keyformat=options.get("keyformat"),
                        new_pbkdf2iters=options.get("pbkdf2iters"),
                        new_keylocation=options.get("keylocation"))
    return Rotation(dataset=name, pool=name.pool, change_options=options,
                    inherit=request.inherit, stdin_key=location == "prompt",
                    keylocation=location,
                    properties=dict(request.properties), marker=marker,
                    load_key=props.get("keystatus") != "available",
                    expect_keyformat=expect_format, expect_encryptionroot=expect_root)


def _refuse(dataset: str, problem: str) -> RotationRefused:
    return RotationRefused(f"{dataset}: {problem}")


def _check_dataset(request: ChangeKeyRequest, state: Mapping[str, DatasetState]) -> DatasetState:
    name = request.dataset
    current = state.get(name)
    if current is None:
        raise _refuse(name, "dataset does not exist")
    props = current.props
    if props.get("type") not in ("filesystem", "volume"):
        raise _refuse(name, f"a {props.get('type')} has no key of its own to change")
    if props.get("encryption", "off") == "off":
        raise _refuse(name, "not encrypted; a key can only be changed on an encrypted dataset "
                            "(encryption is set when a dataset is created)")
    if props.get("origin", "-") not in ("", "-"):
        raise _refuse(name, f"a clone (of {props['origin']}) uses its origin's key; "
                            "ZFS cannot change keys on clones")
    if props.get("encryptionroot") != name and (request.inherit or request.keyformat is None):
        # zfs_crypto_rewrap(): a child that inherits its key becomes its own encryption
        # root with a new key only when given a keyformat; -i needs an encryption root
        raise _refuse(name, f"not an encryption root (its key comes from "
                            f"{props.get('encryptionroot')}); change the key there"
                            + ("" if request.inherit else ", or give -o keyformat=... to make "
                               "it an encryption root with a key of its own"))
    if current.marker is not None:
        raise _refuse(name, f"a key rotation is pending ({ROTATION_MARKER} is set); "
                            f"run: encroot recover {name}")
    if props.get("keystatus") != "available" and request.load_key is None:
        raise _refuse(name, "key not loaded; load it first (zfs load-key) or pass the "
                            "current key to load it (-l)")
    return current


def _check_inherit_parent(request: ChangeKeyRequest, state: Mapping[str, DatasetState]) -> str:
    name = request.dataset
    parent = name.parent
    if parent is None:
        raise _refuse(name, "a pool's root has no parent to inherit a key from")
    parent_state = state.get(str(parent))
    if parent_state is None or parent_state.props.get("encryption", "off") == "off":
        raise _refuse(name, f"its parent {parent} is not encrypted; -i needs an encrypted parent")
    if parent_state.props.get("keystatus") != "available":
        raise _refuse(name, f"the key of its parent's encryption root "
                            f"{parent_state.props.get('encryptionroot')} is not loaded; "
                            "load it first (zfs load-key)")
    return parent_state.props.get("encryptionroot", "")


def _new_key_options(request: ChangeKeyRequest,
                     props: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The ``-o`` options of ``zfs change-key``, and where zfs will read the new key."""
    options: dict[str, str] = {}
    new_format = request.new_format
    final_format = new_format or props.get("keyformat", "")
    if new_format is not None:
        options["keyformat"] = new_format
    own_root = props.get("encryptionroot") == request.dataset
    # a new encryption root reads its key from prompt unless told (zfs_crypto_rewrap)
    location = request.keylocation or (props.get("keylocation", "prompt") if own_root
                                       else "prompt")
    if request.key is not None and not location.startswith("file://"):
        location = "prompt"
    if request.key is None and not location.startswith("file://"):
        raise _refuse(request.dataset, "no new key given and keylocation is prompt; give "
                                       "the new key")
    if location != props.get("keylocation") or request.keylocation is not None:
        options["keylocation"] = location
    if request.pbkdf2iters is not None:
        if final_format != "passphrase":
            raise _refuse(request.dataset, f"pbkdf2iters applies to passphrase keys only "
                                           f"(the new key is {final_format})")
        options["pbkdf2iters"] = str(request.pbkdf2iters)
    return options, location
