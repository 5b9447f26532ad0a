"""The documentation agrees with the code: the config table lists exactly the config's keys,
defaults and choices; every docs/ page is reachable from the README; relative links resolve."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmark.config.run import CHOICES, LearnerConfig, RunConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG_PAGE = REPO / "docs" / "configuration.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
REQUIRED = "required"  # the default cell of a key that has no default


def config_keys(cls: type = RunConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, default) of every leaf key of a config dataclass, depth first.

    A nested dataclass is a section (its keys are listed, not it); a list of dataclasses is a key
    whose items' keys are listed as `key[].field`.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from config_keys(tp, key + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        yield key, default
        args = typing.get_args(tp)
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(args[0]):
            yield from config_keys(args[0], key + "[].")


def yaml_text(value: Any) -> str:
    """A value as the table writes it (YAML flow style; a learner without options by its name)."""
    if value is REQUIRED:
        return REQUIRED
    if isinstance(value, LearnerConfig):
        return value.name if not value.options else yaml_text(dataclasses.asdict(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_table() -> dict[str, dict[str, str]]:
    """The rows of docs/configuration.md's key table: key -> {type, default, choices, meaning}."""
    rows: dict[str, dict[str, str]] = {}
    for line in CONFIG_PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"docs/configuration.md: a row needs 5 cells: {line}"
        key = cells[0].strip("`")
        assert key not in rows, f"docs/configuration.md: {key} is listed twice"
        rows[key] = dict(zip(("type", "default", "choices", "meaning"), cells[1:]))
    return rows


def test_config_table_lists_exactly_the_config_keys():
    documented, actual = set(config_table()), {key for key, _ in config_keys()}
    missing = [
        f"| `{key}` | ? | `{yaml_text(default)}` | | ? |"
        for key, default in config_keys()
        if key not in documented
    ]
    assert not missing, "docs/configuration.md lacks rows for:\n" + "\n".join(missing)
    extra = sorted(documented - actual)
    assert not extra, f"docs/configuration.md lists keys the config does not have: {extra}"


def test_config_table_gives_each_key_its_default():
    table = config_table()
    for key, default in config_keys():
        if key in table:
            cell = table[key]["default"]
            expected = REQUIRED if default is REQUIRED else f"`{yaml_text(default)}`"
            assert cell == expected, f"configuration.md: {key} default {cell}, code: {expected}"


def test_config_table_lists_exactly_the_checked_choices():
    table = config_table()
    assert set(CHOICES) <= {key for key, _ in config_keys()}, "CHOICES names a key not in config"
    for key, row in table.items():
        documented = re.findall(r"`([^`]*)`", row["choices"])
        expected = [yaml_text(c) for c in CHOICES.get(key, ())]
        assert sorted(documented) == sorted(expected), (
            f"docs/configuration.md: {key} choices {documented}, "
            f"benchmark.config.run.CHOICES: {expected}"
        )


def test_config_table_reader_sees_a_wrong_row(tmp_path, monkeypatch):
    # the checks above must be able to fail: a page with one choice dropped is caught
    page = CONFIG_PAGE.read_text(encoding="utf-8")
    page = page.replace("`synthetic`, `partimagenet`", "`synthetic`")
    (tmp_path / "configuration.md").write_text(page, encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "CONFIG_PAGE", tmp_path / "configuration.md")
    with pytest.raises(AssertionError, match="data.source choices"):
        test_config_table_lists_exactly_the_checked_choices()


# ---------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(page):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def _prose(page: Path) -> Iterator[str]:
    """The page's lines outside fenced code blocks."""
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def relative_links(page: Path) -> list[str]:
    targets = [t for line in _prose(page) for t in re.findall(r"\]\(([^)\s]+)\)", line)]
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def test_every_docs_page_is_linked_from_the_readme():
    readme = REPO / "README.md"
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(readme)}
    assert PAGES, "docs/ holds no pages"
    unlinked = [p.name for p in PAGES if p.resolve() not in linked]
    assert not unlinked, f"README.md links no docs/ page named {unlinked}"


@pytest.mark.parametrize("page", [REPO / "README.md", *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link {target!r}: no such file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: link {target!r}: no heading there"


PUBLIC_PACKAGES = ("benchmark", "baselines", "episodes", "results")
DOC_FILES = [
    REPO / "README.md",
    REPO / "CONTRIBUTING.md",
    *PAGES,
    *sorted((REPO / "examples").rglob("*.md")),
    *sorted((REPO / "examples").rglob("*.py")),
]
IMPORT_RE = re.compile(
    r"^\s*from ((?:benchmark|baselines|episodes|results)[\w.]*) import ([\w, ()]+)", re.M
)


def test_docs_and_examples_import_only_the_public_face():
    """What a reader copies from the docs imports from a package root, and every name it takes
    is in that package's __all__ (the plumbing under it may change)."""
    import importlib

    problems = []
    for path in DOC_FILES:
        if not path.is_file():
            continue
        for module, names in IMPORT_RE.findall(path.read_text(encoding="utf-8")):
            where = f"{path.relative_to(REPO)}: from {module} import {names.strip()}"
            if module not in PUBLIC_PACKAGES:
                problems.append(f"{where} (import from the package root)")
                continue
            public = set(importlib.import_module(module).__all__)
            problems += [
                f"{where} ({name} is not in {module}.__all__)"
                for name in re.findall(r"\w+", names)
                if name not in public
            ]
    assert problems == []


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_resolves(package):
    import importlib

    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert missing == []
