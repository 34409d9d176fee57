"""The tests' own layout: test modules share helpers through helpers modules, never by
importing one another, and the one poll-with-deadline helper names what it waited for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import poll, wait_for

TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(name: str) -> bool:
    leaf = name.rpartition(".")[2]
    return leaf.startswith("test_") or leaf == "conftest"


def test_no_test_module_imports_another_test_module() -> None:
    """A helper two test modules need lives in a helpers module (tests/helpers.py,
    tests/unit/helpers.py, tests/system/helpers.py), so running one test module never
    collects or runs another's setup, and a conftest stays pytest's alone."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):  # from . import x
                names = [alias.name for alias in node.names]
            if any(name.startswith("tests") and _is_test_module(name) for name in names) or (
                isinstance(node, ast.ImportFrom)
                and node.level
                and _is_test_module(node.module or "")
            ):
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    assert not found, f"test modules imported from elsewhere (move the helper): {found}"


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(values), "the value", timeout_s=5) == "ready"


def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="timed out after 0.05 s waiting for the moon"):
        wait_for(lambda: False, "the moon", timeout_s=0.05)


@pytest.mark.anyio
async def test_poll_returns_the_first_truthy_value() -> None:
    values = iter([False, False, 42])
    assert await poll(lambda: next(values), "the answer") == 42


@pytest.mark.anyio
async def test_poll_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="timed out after 0.05 s waiting for the tide"):
        await poll(lambda: False, "the tide", timeout_s=0.05)
