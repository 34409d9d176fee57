"""The project's docs stand alone: code, tests and docs cite the project's own files
(``docs/design.md``, the README), never a file outside the repository."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = ("DESIGN" + ".md", "CONVEN" + "TIONS", "../" + "shared")
SCOPE = ("fnagent", "drivers", "tests", "docs", "README.md")


def files() -> list[Path]:
    found: list[Path] = []
    for name in SCOPE:
        path = ROOT / name
        found.extend([path] if path.is_file() else sorted(path.rglob("*")))
    return [f for f in found if f.is_file() and f.suffix in (".py", ".md", ".toml", ".txt", "")]


def test_nothing_cites_a_file_outside_the_repository() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {word}"
        for path in files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for word in OUTSIDE
        if word in line
    ]
    assert not cited, "cite docs/design.md or the README instead:\n" + "\n".join(cited)


def test_the_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"the README does not link docs/{doc.name}"
