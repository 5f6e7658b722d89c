"""The lab's parallel runner: which tests go together, and in what order."""

from __future__ import annotations

from pathlib import Path

from encroot.lab.junit import read_run
from encroot.lab.parallel import Module, group, order, parse_collected, read_weights

COLLECTED = """\
tests/zfs/test_a.py::test_one
tests/zfs/test_a.py::test_two[x y]
tests/zfs/test_b.py::test_three

3 tests collected in 0.50s
"""


def test_collected_ids_are_the_lines_naming_a_test() -> None:
    assert parse_collected(COLLECTED) == ["tests/zfs/test_a.py::test_one",
                                          "tests/zfs/test_a.py::test_two[x y]",
                                          "tests/zfs/test_b.py::test_three"]


def test_a_module_s_tests_stay_together_in_collection_order() -> None:
    modules = group(parse_collected(COLLECTED))
    assert modules == [Module("tests/zfs/test_a.py", ("tests/zfs/test_a.py::test_one",
                                                     "tests/zfs/test_a.py::test_two[x y]")),
                       Module("tests/zfs/test_b.py", ("tests/zfs/test_b.py::test_three",))]
    assert modules[0].stem == "test_a"


def test_the_longest_expected_module_starts_first() -> None:
    short = Module("tests/zfs/test_short.py", ("a", "b", "c"))
    long = Module("tests/zfs/test_long.py", ("d",))
    unknown = Module("tests/zfs/test_new.py", ("e", "f"))
    weights = {"tests/zfs/test_short.py": 10.0, "tests/zfs/test_long.py": 500.0}
    # per test: 500 x 1, 30 x 2 (unknown), 10 x 3
    assert order([short, unknown, long], weights) == [long, unknown, short]
    assert order([short, unknown], {}) == [short, unknown]  # by count: 3 tests, 2 tests


def test_weights_table_skips_comments_and_bad_lines(tmp_path: Path) -> None:
    table = tmp_path / "w.txt"
    table.write_text("# seconds module\n816 tests/zfs/test_m.py  # long\nbad line here\n"
                     "x tests/zfs/test_n.py\n48 tests/zfs/test_s.py\n")
    assert read_weights(table) == {"tests/zfs/test_m.py": 816.0, "tests/zfs/test_s.py": 48.0}
    assert read_weights(tmp_path / "missing.txt") == {}
    assert read_weights(None) == {}


def test_the_project_table_names_existing_modules() -> None:
    root = Path(__file__).resolve().parents[2]
    table = read_weights(root / "tests/zfs/module-seconds.txt")
    assert table and all((root / module).is_file() for module in table)


JUNIT = """<?xml version="1.0"?><testsuites><testsuite>
<testcase classname="tests.zfs.{module}" name="{name}" time="2.5">{extra}</testcase>
</testsuite></testsuites>"""


def test_a_run_of_parallel_workers_is_read_from_every_module_file(tmp_path: Path) -> None:
    (tmp_path / "junit-test_a.xml").write_text(JUNIT.format(module="test_a", name="t1",
                                                            extra=""))
    (tmp_path / "junit-test_b.xml").write_text(JUNIT.format(
        module="test_b", name="t2", extra='<failure message="boom"/>'))
    run = read_run("2.3", tmp_path)
    assert run.count("passed") == 1 and run.failed == 1
    assert read_run("2.3", tmp_path / "none").missing


def test_a_module_whose_file_is_missing_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "junit-test_a.xml").write_text(JUNIT.format(module="test_a", name="t1",
                                                            extra=""))
    (tmp_path / "junit-planned.txt").write_text("junit-test_a.xml\njunit-test_b.xml\n")
    run = read_run("2.3", tmp_path)
    assert run.missing and "junit-test_b.xml" in run.missing and run.failed == 1
