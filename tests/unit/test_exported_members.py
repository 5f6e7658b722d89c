"""The public API is exactly what we chose to export."""

from __future__ import annotations

import importlib

import pytest

import encroot
import encroot.zfs

# Each public module's exported names: adding or removing one is an API change, made
# here on purpose (httpx's tests/test_exported_members.py does the same).
PUBLIC_MODULES: dict[str, set[str]] = {
    "encroot.convert": {
        "PHASES", "ConvertAction", "ConvertRefused", "ConvertRequest", "ConvertResult",
        "ConvertState", "Node", "PhasePlan", "PhaseResult", "Snap", "Step", "SwapAction",
        "SwapReport", "Transfer", "Tree", "convert",
        "finish", "hygiene", "plan_conversion", "plan_phase", "read_state", "recover",
        "send_order", "verify"
    },
    "encroot.doctor": {
        "SEVERITY_ORDER", "STATUS_COLUMNS", "AuditState", "Finding", "Fix", "FixAction",
        "FixOutcome", "FixPlan", "NotRepaired", "apply_fixes", "audit", "history_facts",
        "key_file_problem", "key_opens_with", "plan_fixes", "read_audit_state", "status_rows"
    },
    "encroot.errors": {
        "ConvertRefused", "DatasetBusy", "DatasetExists", "DatasetNotFound", "EncrootError",
        "EncryptionBoundary", "FeatureDisabled", "IncorrectKey", "InputError", "InvalidKey",
        "InvalidName", "InvalidProperty", "KeyAlreadyLoaded", "KeyNotLoaded", "LabError",
        "MigrateRefused", "NotEncrypted", "NotEncryptionRoot", "OutOfSpace", "OwnerAlive",
        "PendingRotation", "PermissionDenied", "PoolNotFound", "ReceiveRefused",
        "RemoteAuthFailed", "RemoteConnectionLost", "RemoteError", "RemoteHostKey",
        "RemoteUnreachable", "RemoteZfsMissing", "RemoteZfsTooOld", "RotationFailed",
        "RotationRefused",
        "StrategyUnavailable", "StreamError",
        "SwapPending", "VerificationFailed", "ZfsError", "ZfsUnavailable"
    },
    "encroot.records": {"Field", "field", "fields", "record", "replace"},
    "encroot.keys": {
        "KEY_FORMATS", "Key", "KeyFormat"
    },
    "encroot.migrate": {
        "PHASES", "KeyReader", "MigrateAction", "MigrateRefused", "MigrateRequest",
        "MigrateResult",
        "MigrateState",
        "PhasePlan", "PhaseResult", "Progress", "Refusal", "Step", "Transfer",
        "VerificationFailed", "migrate", "plan_migration", "plan_phase", "read_state"
    },
    "encroot.names": {
        "MAX_DATASET_NAME_BYTES", "MAX_PROPERTIES", "MAX_PROPERTY_VALUE_BYTES",
        "MAX_USER_PROPERTY_NAME_BYTES", "DatasetName", "PoolName", "SnapshotName",
        "UserPropertyName", "dataset_or_snapshot", "in_tree", "validate_property_value",
        "validate_user_properties"
    },
    "encroot.owned": {
        "CONVERSIONS", "CONVERT_MARKER", "CONVERT_OLD_SUFFIX", "CONVERT_REPLACED",
        "CONVERT_SNAPSHOT_PREFIX", "CONVERT_SUFFIX", "FORMAT", "MARKER_PROPERTIES",
        "MIGRATE_MARKER", "MIGRATE_SNAPSHOT_PREFIX", "MIGRATE_STAGING", "NAMESPACE",
        "RECV_OLD_SUFFIX", "RECV_REPLACED", "RECV_SUFFIX", "RECV_VERIFIED", "REGISTRY",
        "ROTATION_MARKER", "ROTATION_STAGE_PREFIX", "ConvertKept", "ConvertPhase",
        "ConvertReplaced", "ConvertVerified", "Marker", "MigrateCutover", "MigratePhase",
        "NotOurs", "Owned", "Owner", "ReceiveInProgress", "ReceiveReplaced", "ReceiveVerified",
        "RotationJournal", "claim_marker", "convert_old_name", "convert_temp_name", "dumps",
        "foreign_owner", "live_owner", "lookalike_target", "marker_types_table", "migrate_staging",
        "ownership_table", "parse_marker", "processes_with_argument", "recv_old_name",
        "recv_temp_name", "refuse_live", "staged_property"
    },
    "encroot.progress": {
        "Progress", "TransferShape", "human_bytes"
    },
    "encroot.hashes": {
        "file_hashes"
    },
    "encroot.receive": {
        "Expected", "Orphan", "Outcome", "ReceiveAction", "ReceivePlan", "ReceiveRefused",
        "ReceiveRequest", "ReceiveResult", "RecoveryReport", "Step", "TargetState",
        "VerificationFailed", "derived_target", "execute", "expected_datasets",
        "next_recovery_action", "orphan_receives", "pass_options", "plan_receive",
        "process_scan", "read_state", "receive_stream", "recover", "run_plain",
        "split_target", "temp_name", "verify", "wait_for_orphans"
    },
    "encroot.rotate": {
        "STRATEGIES", "Capabilities", "ChangeKeyRequest", "ChangeKeyResult", "Marker",
        "PendingRotation", "RecoveryPlan", "RecoveryResult", "RotationAction", "RotationFailed",
        "RotationPlan", "RotationRefused", "RotationStep", "StrategyUnavailable", "execute",
        "plan_for", "plan_recovery", "read_state", "recover", "rotate_keys", "user_properties"
    },
    "encroot.steps": {
        "CommandStep"
    },
    "encroot.stream": {
        "BEGIN_RECORD_SIZE", "PeekedStream", "StreamDataset", "StreamInfo", "decode_xdr_nvlist",
        "parse_header", "peek_stream"
    },
    "encroot.zfs": {
        "Binaries", "Command", "PropertyTable", "PropertyValue", "Result", "Runner", "SendSpec",
        "SubprocessRunner", "Zfs", "ZfsCommands", "ZfsVersion", "find_binaries",
        "parse_get_json", "parse_get_table", "translate"
    },
    "encroot.zfs.testing": {
        "FaultInjector", "Killed", "RecordingRunner", "Replaced", "Responder"
    },
}

# Each operation's typed request and result.
OPERATIONS = {
    "encroot.receive": ("ReceiveRequest", "ReceiveResult"),
    "encroot.migrate": ("MigrateRequest", "MigrateResult"),
    "encroot.rotate": ("ChangeKeyRequest", "ChangeKeyResult"),
    "encroot.convert": ("ConvertRequest", "ConvertResult"),
    "encroot.doctor": ("AuditState", "FixOutcome"),
}


def test_top_level_exports() -> None:
    assert set(encroot.__all__) == {
        "DatasetBusy", "DatasetExists", "DatasetName", "DatasetNotFound", "EncrootError",
        "EncryptionBoundary", "FeatureDisabled", "IncorrectKey", "InputError", "InvalidKey",
        "InvalidName", "InvalidProperty", "Key", "KeyAlreadyLoaded", "KeyNotLoaded", "LabError",
        "NotEncrypted", "NotEncryptionRoot", "OutOfSpace", "PermissionDenied", "PoolName",
        "PoolNotFound", "SnapshotName", "UserPropertyName", "Zfs", "ZfsError", "ZfsUnavailable",
        "__version__", "ChangeKey", "ChangeKeyResult", "Dataset", "PendingRotation",
        "RecoveryResult", "RotationFailed", "RotationRefused", "StrategyUnavailable",
        "change_keys", "change_keys_async",
    }
    for name in encroot.__all__:
        assert hasattr(encroot, name), name


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_each_public_module_exports_exactly_the_chosen_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "a name listed twice"
    assert set(exported) == PUBLIC_MODULES[name]
    for member in exported:
        assert hasattr(module, member), member


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_exports_a_typed_request_and_result(name: str) -> None:
    module = importlib.import_module(name)
    for member in OPERATIONS[name]:
        assert member in module.__all__ and isinstance(getattr(module, member), type)


def test_zfs_layer_exports() -> None:
    for name in encroot.zfs.__all__:
        assert hasattr(encroot.zfs, name), name
    assert "Zfs" in encroot.zfs.__all__ and "Runner" in encroot.zfs.__all__


def test_error_tree() -> None:
    assert issubclass(encroot.InvalidName, ValueError)
    for cls in (encroot.IncorrectKey, encroot.DatasetNotFound, encroot.EncryptionBoundary):
        assert issubclass(cls, encroot.ZfsError) and issubclass(cls, encroot.EncrootError)
    assert not issubclass(encroot.LabError, encroot.ZfsError)


def test_every_exception_encroot_raises_is_in_the_one_tree() -> None:
    """Operations re-export their errors, but each class is defined once, in errors.py."""
    import importlib
    import pkgutil

    import encroot.errors

    outside = []
    for module_info in pkgutil.walk_packages(encroot.__path__, "encroot."):
        if module_info.name.startswith("encroot.lab"):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == module_info.name and not name.startswith("_")
                    and module_info.name != "encroot.errors"):
                outside.append(f"{module_info.name}.{name}")
    # Killed and Replaced are the test seam's simulated process death and exec, not
    # errors encroot raises.
    assert outside == ["encroot.zfs.testing.Killed", "encroot.zfs.testing.Replaced"]
    for name in encroot.errors.__all__:
        assert issubclass(getattr(encroot.errors, name), encroot.errors.EncrootError), name


def test_encroot_raises_no_builtin_error_of_its_own() -> None:
    """Every error encroot raises derives from EncrootError (InputError is also a
    ValueError).  Exceptions: a Key refuses copy and pickle with TypeError, as Python's
    protocols expect; records (like dataclasses) refuse a wrong call or class with
    TypeError and ValueError."""
    import re
    from pathlib import Path

    root = Path(encroot.__file__).parent
    allowed = {"keys.py": {"TypeError"}, "records.py": {"TypeError", "ValueError"}}
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("lab/"):
            continue
        for name in re.findall(r"raise (ValueError|TypeError|RuntimeError|KeyError|OSError|"
                               r"Exception)\(", path.read_text()):
            if name not in allowed.get(relative, set()):
                found.append(f"{relative}: {name}")
    assert found == []
