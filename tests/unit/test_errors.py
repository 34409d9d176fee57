"""The one error tree: every ``FnAgentError`` subclass, wherever defined, is drawn in
``fnagent/errors.py``'s docstring with its status and parent, has a default message, and is
defined there or, for the driver's errors (drivers cannot import fnagent), in drivers/errors.py."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import pytest

import drivers
import fnagent
from drivers import errors as driver_errors
from fnagent import errors
from fnagent.errors import FnAgentError, PoolEmpty


def _import_everything() -> None:
    """Every module of both packages, so every subclass defined anywhere exists."""
    for package in (drivers, fnagent):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def _subclasses(cls: type[FnAgentError]) -> list[type[FnAgentError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


_import_everything()
# Test doubles (tests/) are not the product's errors.
ALL_ERRORS = sorted(
    {cls for cls in _subclasses(FnAgentError) if not cls.__module__.startswith("tests")},
    key=lambda cls: cls.__name__,
)

# A tree line: "│   └── MemoryNeverFitsError (400)   explanation"; "(401 -> 404)" means the
# registry says 401 and the caller gets 404. Classes drawn without a status inherit theirs.
TREE_LINE = re.compile(
    r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)(?: \((?:\d+ -> )?(?P<status>\d+)\))?"
)


def documented_tree(module: ModuleType) -> dict[str, tuple[str | None, int | None]]:
    """name -> (parent name, documented status), read from the module docstring's drawing."""
    doc = module.__doc__ or ""
    drawing = doc[doc.index("FnAgentError (") :].split("\n\n")[0]
    tree: dict[str, tuple[str | None, int | None]] = {}
    parents: list[str] = []
    for line in drawing.splitlines():
        match = TREE_LINE.match(line.strip("\n"))
        assert match, f"unreadable tree line: {line!r}"
        depth = len(match["indent"].lstrip(" ")) // 4 if parents else 0
        del parents[depth:]
        status = int(match["status"]) if match["status"] else None
        tree[match["name"]] = (parents[-1] if parents else None, status)
        parents.append(match["name"])
    return tree


def test_the_drawing_covers_every_error_class_wherever_defined() -> None:
    assert sorted(documented_tree(errors)) == sorted(cls.__name__ for cls in ALL_ERRORS)


def test_every_error_is_defined_in_one_of_the_two_error_modules() -> None:
    elsewhere = [
        f"{cls.__module__}.{cls.__name__}"
        for cls in ALL_ERRORS
        if cls.__module__ not in (errors.__name__, driver_errors.__name__)
    ]
    assert not elsewhere, f"define these in fnagent/errors.py: {elsewhere}"


def test_fnagent_errors_exports_the_whole_tree() -> None:
    for cls in ALL_ERRORS:
        assert getattr(errors, cls.__name__) is cls
        assert cls.__name__ in errors.__all__


def test_status_message_and_parent_as_documented() -> None:
    for name, (parent, status) in documented_tree(errors).items():
        cls = getattr(errors, name)
        assert isinstance(cls.status, int) and 400 <= cls.status <= 599, name
        assert isinstance(cls.default_message, str) and cls.default_message.strip(), name
        if status is not None:
            assert cls.status == status, name
        if parent is not None:
            assert cls.__bases__ == (getattr(errors, parent),), name


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_message_defaults_and_overrides(cls: type[FnAgentError]) -> None:
    assert cls().message == cls.default_message == str(cls())
    assert cls("custom text").message == str(cls("custom text")) == "custom text"


def test_pool_empty_is_not_a_caller_facing_error() -> None:
    assert not issubclass(PoolEmpty, FnAgentError)
