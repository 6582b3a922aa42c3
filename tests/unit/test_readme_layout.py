"""The README's Layout section names every module of the package in its directory, so that a
reader looking for where something is done finds it there (a module added without its line
fails here). Generated code (scoring/proto/) is named as a directory, subpackages' __init__.py
files not at all."""

from __future__ import annotations

import re
from pathlib import Path

import service

PACKAGE = Path(service.__file__).parent
README = PACKAGE.parent / "README.md"
GENERATED = {"scoring/proto"}


def _layout_block() -> list[str]:
    text = README.read_text()
    section = text[text.index("\n## Layout\n"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```", start)].splitlines()


def _named_by_directory() -> dict[str, set[str]]:
    """The .py names each line of the service/ part names, by the directory it is under ("" for
    the package's top level: lines indented by two, under service/)."""
    named: dict[str, set[str]] = {}
    directory: str | None = None
    for line in _layout_block():
        if not line.startswith(" "):
            directory = "" if line.startswith("service/") else None
            continue
        if directory is None:
            continue
        if subpackage := re.match(r"^  (\w+)/", line):
            directory = subpackage.group(1)
        elif re.match(r"^  \S", line):
            directory = ""
        names = re.findall(r"(?<![\w/])(\w+\.py)\b", line)
        named.setdefault(directory, set()).update(names)
    return named


def test_every_module_of_the_package_is_named_in_its_directory() -> None:
    named = _named_by_directory()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        directory = relative.parent.as_posix() if relative.parent != Path(".") else ""
        if any(directory.startswith(generated) for generated in GENERATED):
            continue
        if directory and path.name == "__init__.py" and directory != "commands":
            continue
        if path.name not in named.get(directory, set()):
            missing.append(relative.as_posix())
    assert missing == []


def test_every_module_named_exists() -> None:
    for directory, names in _named_by_directory().items():
        for name in names:
            assert (PACKAGE / directory / name).is_file(), f"{directory}/{name}"
