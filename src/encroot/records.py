"""Plain-data classes without the start-up cost of ``dataclasses``.

``@record`` makes a class a value record the way ``@dataclass`` does (the
same options encroot uses: ``frozen``, ``eq``, ``order``, ``kw_only``;
``field(default=, default_factory=, repr=, compare=)``; ``__post_init__``),
and mypy reads it as one (``typing.dataclass_transform``).  It exists for
speed: Python 3.11's ``dataclasses`` compiles each generated method with
``exec`` when the class is made, and imports ``inspect``.  Under the lab's
emulated CPU that was most of every ``encroot`` start: importing the receive
path took 1.25 s with ``@dataclass`` and 0.85 s without it, migrate 1.6 s
and 0.6 s.  Here the methods are shared functions over a field table, made
without compiling anything.

Records still work with ``dataclasses``' functions (``fields``, ``asdict``,
``replace``, ``is_dataclass``): the first use builds their ``Field`` objects,
importing ``dataclasses`` only then.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["Field", "field", "fields", "record", "replace"]

C = TypeVar("C", bound=type)
R = TypeVar("R")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_FIELDS: str = "__record_fields__"  # on each record class: its fields, inherited ones first


class Field:
    """One field of a record: its name, default or factory, and how it is shown and compared."""

    __slots__ = ("compare", "default", "default_factory", "kw_only", "name", "repr", "type")

    def __init__(self, *, default: Any = MISSING, default_factory: Any = MISSING,
                 repr: bool = True, compare: bool = True, kw_only: Any = MISSING) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.kw_only = kw_only

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def field(*, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True,
          compare: bool = True, kw_only: Any = MISSING) -> Any:
    """A field with a default, a ``default_factory``, or hidden from ``repr``/``==``."""
    return Field(default=default, default_factory=default_factory, repr=repr,
                 compare=compare, kw_only=kw_only)


def fields(record_or_class: Any) -> tuple[Field, ...]:
    """The fields of a record (or record class), in order.

    Raises:
        TypeError: not a record.
    """
    try:
        found: tuple[Field, ...] = record_or_class.__record_fields__
    except AttributeError:
        raise TypeError(f"{record_or_class!r} is not a record") from None
    return found


def replace(obj: R, /, **changes: Any) -> R:
    """A copy of the record ``obj`` with ``changes`` to some of its fields.

    Raises:
        TypeError: a name in ``changes`` is not a field of ``obj``.
    """
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)


def _is_class_var(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _collect_fields(cls: type, kw_only: bool) -> dict[str, Field]:
    """The fields of ``cls``: its record bases' first, then its own annotations in order."""
    table: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for inherited in base.__dict__.get(_FIELDS, ()):
            table[inherited.name] = inherited
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (inspect: the import avoided)
    for name, annotation in own.items():
        if _is_class_var(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name, spec.type = name, annotation
        if spec.kw_only is MISSING:
            spec.kw_only = kw_only
        if isinstance(value, Field):  # as dataclasses do: the class keeps a plain default
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        table[name] = spec
    _check_order(cls, table.values())
    return table


def _check_order(cls: type, specs: Any) -> None:
    seen_default = False
    for spec in specs:
        if spec.kw_only:
            continue
        has_default = spec.default is not MISSING or spec.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__qualname__}: non-default argument {spec.name!r} "
                            "follows default argument")
        seen_default = seen_default or has_default


def _make_init(cls: type, specs: tuple[Field, ...]) -> Callable[..., None]:
    positional = tuple(spec.name for spec in specs if not spec.kw_only)
    known = {spec.name for spec in specs}
    plan = tuple((spec.name, spec.default, spec.default_factory) for spec in specs)
    post_init = getattr(cls, "__post_init__", None) is not None
    qualname = cls.__qualname__
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(positional):
            raise TypeError(f"{qualname}.__init__() takes {len(positional) + 1} positional "
                            f"arguments but {len(args) + 1} were given")
        values = dict(zip(positional, args, strict=False))  # counted above
        for key, value in kwargs.items():
            if key not in known:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword "
                                f"argument {key!r}")
            if key in values:
                raise TypeError(f"{qualname}.__init__() got multiple values for "
                                f"argument {key!r}")
            values[key] = value
        for name, default, factory in plan:
            if name in values:
                value = values[name]
            elif default is not MISSING:
                value = default
            elif factory is not MISSING:
                value = factory()
            else:
                raise TypeError(f"{qualname}.__init__() missing 1 required argument: "
                                f"{name!r}")
            setter(self, name, value)
        if post_init:
            self.__post_init__()

    return __init__


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the named attributes as a tuple (also for one or none)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        single = attrgetter(names[0])
        return lambda obj: (single(obj),)
    return attrgetter(*names)


def _set_new(cls: type, name: str, value: Any) -> None:
    """Add a method unless the class body defines it (as dataclasses do)."""
    if name not in cls.__dict__:
        setattr(cls, name, value)


def _add_eq_and_order(cls: type, values: Callable[[Any], tuple[Any, ...]],
                      order: bool) -> None:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return values(self) == values(other)

    _set_new(cls, "__eq__", __eq__)
    if not order:
        return

    def comparer(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
        def method(self: Any, other: Any) -> Any:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return compare(values(self), values(other))
        return method

    for name, compare in (("__lt__", tuple.__lt__), ("__le__", tuple.__le__),
                          ("__gt__", tuple.__gt__), ("__ge__", tuple.__ge__)):
        if name in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} defines {name}; order=True makes it")
        setattr(cls, name, comparer(compare))


def _add_hash(cls: Any, values: Callable[[Any], tuple[Any, ...]], *, eq: bool,
              frozen: bool, explicit_hash: bool) -> None:
    """``__hash__`` by dataclasses' rule: by value when frozen, none when only ``eq``."""
    if explicit_hash or not eq:
        return
    def __hash__(self: Any) -> int:
        return hash(values(self))

    cls.__hash__ = __hash__ if frozen else None


def _add_frozen(cls: Any, names: frozenset[str]) -> None:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            _frozen_error(name)
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            _frozen_error(name)
        super(cls, self).__delattr__(name)

    for name, method in (("__setattr__", __setattr__), ("__delattr__", __delattr__)):
        if name in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} defines {name}; a frozen record makes it")
        setattr(cls, name, method)


def _frozen_error(name: str) -> None:
    from dataclasses import FrozenInstanceError  # the error users of dataclasses expect

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


class _DataclassFields:
    """``__dataclass_fields__``, built on first use so ``dataclasses`` accepts a record."""

    def __init__(self, specs: tuple[Field, ...]) -> None:
        self.specs = specs
        self.built: dict[str, Any] | None = None

    def __get__(self, instance: object, owner: type) -> dict[str, Any]:
        if self.built is None:
            import dataclasses

            built = {}
            for spec in self.specs:
                made: Any = dataclasses.field(
                    default=dataclasses.MISSING if spec.default is MISSING else spec.default,
                    default_factory=(dataclasses.MISSING if spec.default_factory is MISSING
                                     else spec.default_factory),
                    repr=spec.repr, compare=spec.compare, kw_only=bool(spec.kw_only))
                made.name, made.type = spec.name, spec.type
                made._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
                built[spec.name] = made
            self.built = built
        return self.built


def _build(cls: C, *, frozen: bool, eq: bool, order: bool, kw_only: bool) -> C:
    class_hash = cls.__dict__.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING
                         or (class_hash is None and "__eq__" in cls.__dict__))
    specs = tuple(_collect_fields(cls, kw_only).values())
    setattr(cls, _FIELDS, specs)
    cls.__dataclass_fields__ = _DataclassFields(specs)  # type: ignore[attr-defined]
    _set_new(cls, "__init__", _make_init(cls, specs))
    shown = tuple((spec.name, attrgetter(spec.name)) for spec in specs if spec.repr)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={get(self)!r}" for name, get in shown)
        return f"{self.__class__.__qualname__}({inner})"

    _set_new(cls, "__repr__", __repr__)
    _set_new(cls, "__match_args__", tuple(spec.name for spec in specs if not spec.kw_only))
    values = _getter(tuple(spec.name for spec in specs if spec.compare))
    if eq:
        _add_eq_and_order(cls, values, order)
    _add_hash(cls, values, eq=eq, frozen=frozen, explicit_hash=explicit_hash)
    if frozen:
        _add_frozen(cls, frozenset(spec.name for spec in specs))
    return cls


@overload
def record(cls: C, /) -> C: ...


@overload
def record(*, frozen: bool = False, eq: bool = True, order: bool = False,
           kw_only: bool = False) -> Callable[[C], C]: ...


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: C | None = None, /, *, frozen: bool = False, eq: bool = True,
           order: bool = False, kw_only: bool = False) -> C | Callable[[C], C]:
    """Make ``cls`` a value record: ``__init__``, ``__repr__``, ``__eq__`` (and ``__hash__``
    when frozen) from its annotated fields, as ``@dataclass`` with the same options would."""
    def wrap(target: C) -> C:
        return _build(target, frozen=frozen, eq=eq, order=order, kw_only=kw_only)

    return wrap if cls is None else wrap(cls)
