"""encroot.records: value records that behave as the dataclasses they replaced."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import pytest

from encroot.records import field, fields, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    secret: str = field(default="", repr=False, compare=False)


@record
class Box:
    items: list[int] = field(default_factory=list)


@record(frozen=True, kw_only=True)
class Named:
    name: str
    size: int = 1


@record(frozen=True, order=True)
class Version:
    major: int
    minor: int


class Base:
    KIND: ClassVar[str]
    owner: str | None  # not a record: its annotations are no fields


@record(frozen=True, kw_only=True)
class Child(Base):
    KIND: ClassVar[str] = "child"
    target: str
    owner: str | None = None


@record(frozen=True)
class Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")
        object.__setattr__(self, "value", self.value * 2)


def test_init_takes_positions_keywords_defaults_and_factories() -> None:
    assert Point(1) == Point(x=1, y=0, tags=())
    assert Point(1, 2).y == 2
    assert Point(1).tags == () and Box().items == [] and Box().items is not Box().items


def test_wrong_calls_fail_as_a_dataclass_would() -> None:
    with pytest.raises(TypeError, match="missing 1 required argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional arguments"):
        Point(1, 2, (), "s", 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional arguments"):
        Named("n")  # type: ignore[call-arg]


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @record
        class Bad:
            a: int = 1
            b: int  # type: ignore[misc]


def test_frozen_records_refuse_assignment_with_dataclasses_error() -> None:
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x


def test_equality_hash_and_repr_follow_the_fields() -> None:
    assert Point(1, secret="a") == Point(1, secret="b")  # compare=False
    assert hash(Point(1, 2)) == hash(Point(1, 2)) and Point(1) != Point(2)
    assert Point(1).__eq__((1, 0, (), "")) is NotImplemented
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=())"
    with pytest.raises(TypeError, match="unhashable"):
        hash(Box())  # eq without frozen: no hash, as dataclasses decide


def test_order_compares_field_by_field() -> None:
    assert Version(1, 2) < Version(1, 10) <= Version(1, 10) < Version(2, 0)
    assert sorted([Version(2, 0), Version(1, 5)]) == [Version(1, 5), Version(2, 0)]


def test_class_variables_and_plain_bases_add_no_fields() -> None:
    assert [f.name for f in fields(Child)] == ["target", "owner"]
    assert Child(target="t").KIND == "child"


def test_inherited_record_fields_come_first() -> None:
    @record(frozen=True)
    class Point3(Point):
        z: int = 0

    assert [f.name for f in fields(Point3)] == ["x", "y", "tags", "secret", "z"]
    assert Point3(1, 2, z=3).z == 3


def test_post_init_runs_after_the_fields_are_set() -> None:
    assert Checked(2).value == 4
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_replace_copies_with_changes() -> None:
    assert replace(Point(1, 2), y=5) == Point(1, 5)
    assert replace(Named(name="a"), size=3) == Named(name="a", size=3)
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(Point(1), z=1)


def test_dataclasses_functions_accept_records() -> None:
    """Callers of the public API may use dataclasses' helpers on its records."""
    point = Point(1, 2, ("a",))
    assert dataclasses.is_dataclass(point)
    assert [f.name for f in dataclasses.fields(point)] == ["x", "y", "tags", "secret"]
    assert dataclasses.asdict(point) == {"x": 1, "y": 2, "tags": ("a",), "secret": ""}
    assert dataclasses.replace(point, y=3) == Point(1, 3, ("a",))
    assert dataclasses.replace(Named(name="n"), size=2).size == 2


def test_fields_refuses_what_is_no_record() -> None:
    with pytest.raises(TypeError, match="is not a record"):
        fields(object())


def test_an_encroot_start_imports_neither_dataclasses_nor_inspect() -> None:
    """The reason records exist: the start-up cost of those two imports."""
    code = ("import sys, encroot.cli.receive, encroot.receive, encroot.cli.migrate, "
            "encroot.migrate, encroot.convert, encroot.rotate, encroot.doctor; "
            "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
