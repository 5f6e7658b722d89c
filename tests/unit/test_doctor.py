"""The audit's pure logic on constructed states: each finding's code, severity and fix,
the safe-fix selection, history parsing and the status table."""

from __future__ import annotations

import os

from encroot.doctor import (
    AuditState,
    FixAction,
    apply_fixes,
    audit,
    history_facts,
    key_file_problem,
    plan_fixes,
    status_rows,
)
from encroot.owned import (
    Owner,
    ReceiveInProgress,
    ReceiveReplaced,
    ReceiveVerified,
    RotationJournal,
    dumps,
)
from encroot.owned.owner import process_start

from .fakes import make_zfs

ME = Owner.current()
LIVE = Owner(host=ME.host, boot_id=ME.boot_id, pid=os.getppid(),
             start=process_start(os.getppid()))
DEAD = Owner(host=ME.host, boot_id="an earlier boot", pid=1, start="1")
JOURNAL = dumps(RotationJournal(id="j", started="T", inherit=False, old_keyformat="hex",
                                old_pbkdf2salt="0", old_pbkdf2iters="0",
                                old_encryptionroot="tank", owner=DEAD))


def enc_root(name: str, **extra: str) -> dict[str, str]:
    return {"type": "filesystem", "encryption": "aes-256-gcm", "encryptionroot": name,
            "keyformat": "hex", "keylocation": "file:///k", "keystatus": "available",
            "pbkdf2iters": "0", "canmount": "on", "mountpoint": f"/{name}", "mounted": "yes",
            "origin": "-", "receive_resume_token": "-", **extra}


def child_of(root: str, name: str, **extra: str) -> dict[str, str]:
    return {**enc_root(name), "encryptionroot": root, **extra}


def state_of(props: dict[str, dict[str, str]], *, received: set[str] | None = None,
             local: dict[str, set[str]] | None = None, feature: str = "active",
             reparented: set[str] | None = None) -> AuditState:
    sources = {n: {p: ("local" if p in (local or {}).get(n, set()) else "-") for p in v}
               for n, v in props.items()}
    return AuditState(props, sources, received or set(), {"tank": feature},
                      reparented or set())


def codes(state: AuditState) -> list[tuple[str, str, str]]:
    return [(f.dataset, f.code, f.severity)
            for f in audit(state, key_file=lambda path, fmt: None)]


def test_a_healthy_tree_has_no_findings() -> None:
    state = state_of({"tank": enc_root("tank"), "tank/a": child_of("tank", "tank/a")})
    assert codes(state) == []


def test_own_root_under_encrypted_parent() -> None:
    same = state_of({"tank": enc_root("tank"), "tank/a": enc_root("tank/a")})
    assert codes(same) == [("tank/a", "own-root-could-inherit", "warning")]
    other = state_of({"tank": enc_root("tank"),
                      "tank/a": enc_root("tank/a", keyformat="passphrase",
                                         pbkdf2iters="350000")})
    assert codes(other) == [("tank/a", "own-root-could-inherit", "info")]


def test_keylocation_problems() -> None:
    state = state_of({"tank": enc_root("tank")})
    findings = audit(state, key_file=lambda path, fmt: f"{path} is missing")
    assert [(f.code, f.severity) for f in findings] == [("keylocation-unusable", "error")]
    prompt = state_of({"tank": enc_root("tank", keylocation="prompt")})
    assert codes(prompt) == [("tank", "prompt-key-at-boot", "warning")]
    noauto = state_of({"tank": enc_root("tank", keylocation="prompt", canmount="noauto")})
    assert codes(noauto) == []


def test_key_files_are_checked_for_their_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = tmp_path / "raw"
    raw.write_bytes(bytes(31))
    assert "32" in (key_file_problem(str(raw), "raw") or "")
    raw.write_bytes(bytes(32))
    assert key_file_problem(str(raw), "raw") is None
    hexfile = tmp_path / "hex"
    hexfile.write_text("ab" * 32 + "\n")
    assert key_file_problem(str(hexfile), "hex") is None
    assert "does not exist" in (key_file_problem(str(tmp_path / "nope"), "hex") or "")


def test_key_status_findings() -> None:
    state = state_of({"tank": enc_root("tank", keystatus="unavailable", mounted="no"),
                      "tank/b": enc_root("tank/b", mounted="no", keylocation="file:///b")})
    found = codes(state)
    assert ("tank", "key-unavailable", "warning") in found
    assert ("tank/b", "key-loaded-not-mounted", "info") in found


def test_plaintext_under_encrypted() -> None:
    state = state_of({"tank": enc_root("tank"),
                      "tank/p": {"type": "filesystem", "encryption": "off"}})
    assert codes(state) == [("tank/p", "plaintext-under-encrypted", "warning")]


def test_raw_replica_reparented_needs_history_and_receive_signs() -> None:
    props = {"tank": enc_root("tank"), "tank/r": child_of("tank", "tank/r")}
    assert codes(state_of(props, received={"tank/r"}, reparented={"tank/r"})) == [
        ("tank/r", "raw-replica-reparented", "error")]
    assert codes(state_of(props, received=set(), reparented={"tank/r"})) == []
    assert codes(state_of(props, received={"tank/r"}, reparented=set())) == []


def test_weak_pbkdf2iters_pending_rotation_and_feature() -> None:
    state = state_of({"tank": enc_root("tank", keyformat="passphrase", pbkdf2iters="100000",
                                       **{"encroot:rotation": JOURNAL})},
                     local={"tank": {"encroot:rotation"}}, feature="disabled")
    found = codes(state)
    assert ("tank", "weak-pbkdf2iters", "warning") in found
    assert ("tank", "pending-rotation", "error") in found
    assert ("tank", "encryption-feature-disabled", "warning") in found


def test_leftover_temporaries_reported_once_per_target() -> None:
    marker = dumps(ReceiveInProgress(target="tank/x", owner=DEAD))
    state = state_of({"tank": enc_root("tank"),
                      "tank/x.encroot-recv": child_of("tank", "tank/x.encroot-recv",
                                                      **{"encroot:recv-verified": marker}),
                      "tank/x.encroot-recv/c": child_of("tank", "tank/x.encroot-recv/c",
                                                        **{"encroot:recv-verified": marker})},
                     local={"tank/x.encroot-recv": {"encroot:recv-verified"}})
    findings = [f for f in audit(state, key_file=lambda p, f: None)]
    assert [(f.dataset, f.code, f.fix_line) for f in findings] == [
        ("tank/x.encroot-recv", "leftover-temporary", "encroot receive --recover tank/x")]


def test_fix_selects_only_the_safe_set() -> None:
    props = {"tank": enc_root("tank"), "tank/a": enc_root("tank/a"),
             "tank/r": enc_root("tank/r"), "tank/u": enc_root("tank/u", keystatus="unavailable"),
             "tank/o": enc_root("tank/o", keyformat="raw"),
             "tank/p": {"type": "filesystem", "encryption": "off"}}
    state = state_of(props, received={"tank/r"})
    plan = plan_fixes(audit(state, key_file=lambda p, f: None), state)
    assert [f.command for f in plan.fixes] == ["zfs change-key -i tank/a"]
    reasons = {n.finding.dataset: n.reason for n in plan.not_repaired}
    assert "raw replica: re-parenting would break later raw incrementals, OpenZFS 12614" \
        == reasons["tank/r"]
    assert reasons["tank/u"].startswith("needs a key")
    assert reasons["tank/o"].startswith("its key source differs")
    assert reasons["tank/p"] == "needs a copy received into an encrypted dataset"


def test_history_parsing_finds_inherit_changes_and_receives() -> None:
    history = ("2026-11-22.10:00:00 zfs change-key -i tank/r\n"
               "2026-11-22.10:00:01 zfs change-key tank/s\n"
               "2026-11-22.10:00:02 zfs change-key -l -i tank/t\n"
               "2026-11-22.10:00:03 zfs receive -u -o x:y=1 tank/v\n"
               "2026-11-22.10:00:04 zfs recv tank/w\n")
    assert history_facts(history) == ({"tank/r", "tank/t"}, {"tank/v", "tank/w"})


def test_a_received_own_root_is_not_re_parented_by_fix() -> None:
    props = {"tank": enc_root("tank"), "tank/a": enc_root("tank/a")}
    state = state_of(props)
    state.received_in_history.add("tank/a")
    assert plan_fixes(audit(state, key_file=lambda p, f: None), state).fixes == []


def test_status_rows() -> None:
    state = state_of({"tank": enc_root("tank"), "tank/a": child_of("tank", "tank/a"),
                      "tank/p": {"type": "filesystem", "encryption": "off"}})
    rows = {r["dataset"]: r for r in status_rows(state)}
    assert rows["tank"]["root"] == "own" and rows["tank/a"]["root"] == "inherited"
    assert rows["tank/a"]["keylocation"] == "file:///k" and rows["tank/p"]["root"] == "-"


def test_a_migration_staging_is_reported_as_such_and_never_re_parented_by_fix() -> None:
    staging = enc_root("tank/encroot-migrate", keyformat="passphrase", keylocation="prompt")
    state = state_of({"tank": enc_root("tank", keyformat="passphrase", keylocation="prompt"),
                      "tank/encroot-migrate": staging,
                      "tank/encroot-migrate/a": child_of("tank/encroot-migrate",
                                                         "tank/encroot-migrate/a")})
    state.snapshots["tank/encroot-migrate"] = ["encroot-migrate-20260101-000000"]
    findings = audit(state, key_file=lambda p, f: None)
    about_roots = [f for f in findings if f.code in ("own-root-could-inherit",
                                                     "migration-staging")]
    assert [(f.dataset, f.code) for f in about_roots] == [
        ("tank/encroot-migrate", "migration-staging")]
    assert "12614" in about_roots[0].message
    assert plan_fixes(findings, state).fixes == []


def test_an_interrupted_migrate_cutover_is_a_leftover_that_fix_leaves_alone() -> None:
    marker = '{"source": "src", "snapshot": "s1", "stage": "reparent"}'
    state = state_of({"tank": enc_root("tank", **{"encroot:migrate": marker})},
                     local={"tank": {"encroot:migrate"}})
    findings = audit(state, key_file=lambda p, f: None)
    assert [(f.dataset, f.code, f.fix_line) for f in findings] == [
        ("tank", "leftover-temporary",
         "encroot migrate --phase cutover --key-file '<src key>' src tank")]
    assert "re-parenting began" in findings[0].message
    plan = plan_fixes(findings, state)
    assert plan.fixes == [] and plan.not_repaired[0].reason.startswith("needs the migration")


# -- encroot's own state, only through encroot.owned ------------------------------------

def test_lookalikes_without_a_marker_are_reported_and_never_fixed() -> None:
    state = state_of({"tank": enc_root("tank"),
                      "tank/x.encroot-recv": enc_root("tank/x.encroot-recv"),
                      "tank/y.encroot-old": {"type": "filesystem", "encryption": "off"},
                      "tank/encroot-migrate": enc_root("tank/encroot-migrate")})
    state.snapshots["tank/encroot-migrate"] = ["daily"]
    findings = audit(state, key_file=lambda p, f: None)
    lookalikes = sorted((f.dataset, f.severity) for f in findings
                        if f.code == "lookalike-unowned")
    assert lookalikes == [("tank/encroot-migrate", "warning"),
                          ("tank/x.encroot-recv", "warning"),
                          ("tank/y.encroot-old", "warning")]
    assert all("not encroot's" in f.message for f in findings if f.code == "lookalike-unowned")
    assert not [f for f in findings if f.dataset == "tank/encroot-migrate"
                and f.code != "lookalike-unowned"]
    plan = plan_fixes(findings, state)
    touched = {f.subject for f in plan.fixes}
    assert not touched & {"tank/x", "tank/x.encroot-recv", "tank/y", "tank/encroot-migrate"}
    assert {n.finding.dataset for n in plan.not_repaired
            if n.reason == "not encroot's: encroot never touches it"} >= {
        "tank/x.encroot-recv", "tank/y.encroot-old", "tank/encroot-migrate"}


def test_a_marker_from_a_newer_encroot_is_not_ours() -> None:
    newer = '{"format": 3, "op": "receive", "role": "verified", "owner": null, "data": {}}'
    state = state_of({"tank": enc_root("tank"),
                      "tank/x.encroot-recv": enc_root("tank/x.encroot-recv",
                                                      **{"encroot:recv-verified": newer})},
                     local={"tank/x.encroot-recv": {"encroot:recv-verified"}})
    findings = audit(state, key_file=lambda p, f: None)
    messages = [f.message for f in findings if f.code == "lookalike-unowned"]
    assert any("written by a newer encroot" in m for m in messages)
    assert not [f for f in findings if f.code == "leftover-temporary"]


def test_a_live_owner_is_an_operation_in_progress_that_fix_leaves_alone() -> None:
    temp = "tank/x.encroot-recv"
    state = state_of({"tank": enc_root("tank"),
                      temp: enc_root(temp, **{"encroot:recv-verified": dumps(
                          ReceiveInProgress(target="tank/x", owner=LIVE))})},
                     local={temp: {"encroot:recv-verified"}})
    findings = audit(state, key_file=lambda p, f: None)
    progress = [f for f in findings if f.code == "operation-in-progress"]
    assert [(f.dataset, f.severity) for f in progress] == [(temp, "info")]
    assert f"held by encroot pid {LIVE.pid} on this host" in progress[0].message
    assert not [f for f in findings if f.code in ("leftover-temporary", "lookalike-unowned")]
    plan = plan_fixes(findings, state)
    assert [f for f in plan.fixes if f.subject in ("tank/x", temp)] == []
    reason = next(n.reason for n in plan.not_repaired if n.finding.code ==
                  "operation-in-progress")
    assert reason.startswith(f"owner alive: encroot pid {LIVE.pid} on this host (started ")


def test_receive_markers_of_a_dead_owner_are_one_leftover_per_target() -> None:
    old = "tank/x.encroot-old"
    state = state_of({"tank": enc_root("tank"),
                      "tank/x": enc_root("tank/x", **{"encroot:recv-verified": dumps(
                          ReceiveVerified(guid="1", owner=DEAD))}),
                      old: enc_root(old, **{"encroot:recv-replaced": dumps(
                          ReceiveReplaced(target="tank/x", owner=DEAD))})},
                     local={"tank/x": {"encroot:recv-verified"},
                            old: {"encroot:recv-replaced"}})
    leftovers = [(f.dataset, f.fix_line) for f in audit(state, key_file=lambda p, f: None)
                 if f.code == "leftover-temporary"]
    assert leftovers == [("tank/x", "encroot receive --recover tank/x")]
    plan = plan_fixes(audit(state, key_file=lambda p, f: None), state)
    assert [(f.action, f.subject) for f in plan.fixes] == [
        (FixAction.RECOVER_RECEIVE, "tank/x")]


def test_a_separately_keyed_child_is_re_parented_only_when_its_key_is_provably_the_parents(
        ) -> None:
    props = {"tank": enc_root("tank", keylocation="file:///parent.key"),
             "tank/data": enc_root("tank/data", keylocation="prompt")}
    state = state_of(props)
    findings = audit(state, key_file=lambda p, f: None)
    asked: list[tuple[str, str]] = []

    def opens(answer: bool) -> object:
        def probe(name: str, location: str) -> bool:
            asked.append((name, location))
            return answer
        return probe

    refused = plan_fixes(findings, state, key_opens=opens(False))  # type: ignore[arg-type]
    assert refused.fixes == []
    assert asked == [("tank/data", "file:///parent.key")]
    reason = next(n.reason for n in refused.not_repaired if n.finding.dataset == "tank/data")
    assert "not provably the parent's" in reason
    assert plan_fixes(findings, state).fixes == []  # no probe: no proof
    proven = plan_fixes(findings, state, key_opens=opens(True))  # type: ignore[arg-type]
    assert [f.subject for f in proven.fixes] == ["tank/data"]


def test_fixes_are_commands_with_names_quoted_and_executed_as_argv() -> None:
    props = {"tank": enc_root("tank"), "tank/my data": enc_root("tank/my data"),
             "tank/j": enc_root("tank/j", **{"encroot:rotation": JOURNAL})}
    state = state_of(props, local={"tank/j": {"encroot:rotation"}})
    findings = audit(state, key_file=lambda p, f: None)
    own = next(f for f in findings if f.dataset == "tank/my data")
    assert own.fix_line == "zfs change-key -i 'tank/my data'"
    assert own.as_json()["fix_argv"] == [["zfs", "change-key", "-i", "tank/my data"]]
    plan = plan_fixes(findings, state)
    reparent = next(f for f in plan.fixes if f.action is FixAction.REPARENT)
    assert reparent.command == "zfs change-key -i 'tank/my data'"
    assert reparent.as_json()["argv"] == [["zfs", "change-key", "-i", "tank/my data"]]
    zfs, runner = make_zfs()
    outcomes = apply_fixes(zfs, [reparent])
    assert outcomes[0].done
    assert runner.argvs == [("/sbin/zfs", "change-key", "-i", "tank/my data")]
