"""The error tree (drivers/errors.py) is what its module docstring draws."""

from __future__ import annotations

import inspect
import re

import pytest

from drivers import errors
from drivers.errors import FnAgentError, PoolEmpty

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, FnAgentError) and cls.__module__ == errors.__name__
]

# A tree line: "│   └── MemoryNeverFitsError (400)   explanation"; "(401 -> 404)" means the
# registry says 401 and the caller gets 404. Classes drawn without a status inherit theirs.
TREE_LINE = re.compile(
    r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)(?: \((?:\d+ -> )?(?P<status>\d+)\))?"
)


def documented_tree() -> dict[str, tuple[str | None, int | None]]:
    """name -> (parent name, documented status), read from the module docstring's drawing."""
    doc = errors.__doc__ or ""
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


def test_the_drawing_covers_every_error_class() -> None:
    assert sorted(documented_tree()) == sorted(cls.__name__ for cls in ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_status_message_and_parent_as_documented(cls: type[FnAgentError]) -> None:
    assert isinstance(cls.status, int) and 400 <= cls.status <= 599
    assert isinstance(cls.default_message, str) and cls.default_message.strip()
    parent, status = documented_tree()[cls.__name__]
    if status is not None:
        assert cls.status == status
    if parent is not None:
        assert cls.__bases__ == (getattr(errors, parent),)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_message_defaults_and_overrides(cls: type[FnAgentError]) -> None:
    assert cls().message == cls.default_message == str(cls())
    assert cls("custom text").message == str(cls("custom text")) == "custom text"


def test_pool_empty_is_not_a_caller_facing_error() -> None:
    assert not issubclass(PoolEmpty, FnAgentError)
