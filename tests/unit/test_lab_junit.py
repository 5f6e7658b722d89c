"""The JUnit summary printed at the end of ./dev test: counts, failures, slowest, total line."""

from __future__ import annotations

from pathlib import Path

from encroot.cli import main
from encroot.lab.junit import read_run, summarise

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.zfs.test_a" name="test_fast" time="1.5"/>
<testcase classname="tests.zfs.test_a" name="test_slow" time="30.25"/>
<testcase classname="tests.zfs.test_b" name="test_broken" time="2.0">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.zfs.test_b" name="test_setup" time="0.5">
  <error message="fixture failed">trace</error></testcase>
<testcase classname="tests.zfs.test_c" name="test_skip" time="0.0">
  <skipped message="needs zfs 2.2" type="pytest.skip">why</skipped></testcase>
</testsuite></testsuites>
"""


def _run_folder(tmp_path: Path, name: str, junit: str | None, version: str = "") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    if junit is not None:
        (folder / "junit.xml").write_text(junit)
    if version:
        (folder / "zfs-version.txt").write_text(version + "\nzfs-kmod-" + version + "\n")
    return folder


def test_a_run_counts_each_outcome_and_names_its_version(tmp_path: Path) -> None:
    run = read_run("2.3", _run_folder(tmp_path, "a", JUNIT, "zfs-2.3.2-1"))
    assert (run.count("passed"), run.count("failed"), run.count("error"),
            run.count("skipped")) == (2, 1, 1, 1)
    assert run.failed == 2
    assert run.line().startswith("2.3 (zfs-2.3.2-1): 2 passed, 2 failed, 1 skipped in ")


def test_the_summary_lists_failures_skips_slowest_and_closes_with_the_total(
        tmp_path: Path) -> None:
    runs = [read_run("unit", _run_folder(tmp_path, "u", JUNIT)),
            read_run("2.1", _run_folder(tmp_path, "v", JUNIT))]
    lines = summarise(runs, slowest=2)
    assert "  FAILED: tests.zfs.test_b::test_broken" in lines
    assert "  ERROR: tests.zfs.test_b::test_setup" in lines
    assert "  SKIPPED: tests.zfs.test_c::test_skip: needs zfs 2.2" in lines
    slowest = lines.index("  slowest 2:")
    assert lines[slowest + 1].endswith("30.2 s  tests.zfs.test_a::test_slow")
    assert lines[slowest + 2].endswith("2.0 s  tests.zfs.test_b::test_broken")
    assert lines[-1] == "total: 4 passed, 4 failed, 2 skipped"


def test_a_run_without_results_counts_as_failed_never_as_passed(tmp_path: Path) -> None:
    missing = read_run("2.4", _run_folder(tmp_path, "m", None))
    broken = read_run("2.1", _run_folder(tmp_path, "b", "<testsuites><testcase"))
    assert missing.failed == 1 and broken.failed == 1
    assert "no results" in missing.line()
    assert summarise([missing, broken])[-1] == "total: 0 passed, 2 failed"


def test_the_cli_exits_1_on_failures_and_0_when_all_passed(
        tmp_path: Path, capsys: object) -> None:
    good = _run_folder(tmp_path, "g", JUNIT.split("<testcase classname=\"tests.zfs.test_b\"")[0]
                       + "</testsuite></testsuites>")
    bad = _run_folder(tmp_path, "f", JUNIT)
    assert main(["lab", "summary", f"2.3={good}"]) == 0
    assert main(["lab", "summary", "--slowest", "0", f"2.3={good}", f"2.1={bad}"]) == 1
    assert main(["lab", "summary", "no-separator"]) == 2


def test_lab_test_takes_pytest_arguments_that_start_with_an_option() -> None:
    """./dev test runs `lab test ... -- -m 'zfs and all_versions' tests/zfs` on 2.1 and 2.4."""
    from encroot.cli import build_parser
    from encroot.cli.lab import pytest_arguments

    parser = build_parser(["lab"])
    selected = parser.parse_args(["lab", "test", "--zfs", "2.1", "--out", "o", "--", "-m",
                                  "zfs and all_versions", "tests/zfs"])
    assert pytest_arguments(selected.pytest_args) == ["-m", "zfs and all_versions", "tests/zfs"]
    plain = parser.parse_args(["lab", "test", "tests/zfs/test_rotate.py", "-x"])
    assert pytest_arguments(plain.pytest_args) == ["tests/zfs/test_rotate.py", "-x"]
    assert pytest_arguments(parser.parse_args(["lab", "test", "--"]).pytest_args) == []
