"""Property options as zfs takes them: checked names, ``-o NAME=VALUE`` arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidProperty
from ..names import validate_property_value

__all__ = ["check_property_name", "property_args"]

# Native property names are lowercase words; user properties contain ':'.
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_.:@-]*")


def check_property_name(name: str) -> str:
    if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
        raise InvalidProperty(f"property name {name!r}: use lowercase letters, digits and "
                              "'-_.:' (user properties are namespace:name)", subject=str(name))
    return name


def property_args(flag: str, properties: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for name, value in properties.items():
        check_property_name(name)
        args += [flag, f"{name}={validate_property_value(name, value)}"]
    return args


