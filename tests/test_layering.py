"""The packages import one way (episodes <- baselines <- benchmark; results beside them, free of
torch), counting imports inside functions too; and commands that do not run MAML stay quiet."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("episodes", "results", "baselines", "benchmark")

# package -> top-level names it must never import, at any depth (module level or in a function)
FORBIDDEN = {
    "episodes": {"baselines", "benchmark", "results", "timm", "pandas"},
    "results": {"baselines", "benchmark", "torch", "torchvision", "timm"},
    "baselines": {"benchmark", "results", "timm"},
    "benchmark": set(),
}
# package -> names allowed only inside functions (optional heavy dependencies, kept lazy)
LAZY_ONLY = {
    "episodes": {"torch", "learn2learn"},
    "results": set(),
    "baselines": {"learn2learn"},
    "benchmark": {"learn2learn"},
}
# What results shares with the others: the file primitives (canonical JSON, sha256, atomic write)
# and the base class of user errors.
SHARED = ("episodes.storage", "episodes.errors")
# The rooms of benchmark/, lowest first: a room imports only the rooms before it (and itself).
BENCHMARK_ROOMS = ("config", "data", "models", "features", "evaluation", "training", "run", "cli")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every name an import statement of a file imports;
    an import inside a function is not at module level (one under a module-level try/if is)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, not in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module
            # `from a import b` may import the submodule a.b: name both
            found.extend((f"{module}.{alias.name}", not in_function) for alias in node.names)
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_one_way(package):
    problems = []
    for path in _sources(package):
        for module, module_level in _imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO)} imports {module}"
            if top in FORBIDDEN[package]:
                problems.append(where)
            elif package == "results" and top == "episodes" and not module.startswith(SHARED):
                problems.append(f"{where}: results takes only {SHARED} from episodes")
            elif top in LAZY_ONLY[package] and module_level:
                problems.append(f"{where} at module level (keep it inside the function)")
    assert problems == []


def _room(module_or_path: str) -> str | None:
    """The room of a benchmark module ("benchmark.features.cache") or file path; None outside."""
    parts = module_or_path.replace("/", ".").removesuffix(".py").split(".")
    if parts[0] != "benchmark" or len(parts) < 2 or parts[1] not in BENCHMARK_ROOMS:
        return None
    return parts[1]


def test_benchmark_holds_rooms_and_no_loose_module():
    loose = sorted(p.name for p in (REPO / "benchmark").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]
    rooms = sorted(
        p.name
        for p in (REPO / "benchmark").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    )
    assert rooms == sorted(BENCHMARK_ROOMS)


def test_rooms_import_only_the_rooms_below_them():
    problems = []
    for room in BENCHMARK_ROOMS:
        allowed = BENCHMARK_ROOMS[: BENCHMARK_ROOMS.index(room) + 1]
        for path in _sources(f"benchmark/{room}"):
            for module, _ in _imports(path):
                if module.split(".")[0] == "benchmark" and _room(module) not in allowed:
                    problems.append(f"{path.relative_to(REPO)} imports {module}")
    assert problems == []


# (file, imported top-level name) allowed inside a function, each for a reason said there.
LAZY_ALLOWED = {
    ("baselines/maml.py", "learn2learn"),  # gym's banner and seconds of import, for one learner
    ("episodes/adapters.py", "torch"),  # episodes depends on numpy only
    ("episodes/adapters.py", "learn2learn"),
    ("episodes/__init__.py", "episodes"),  # EpisodeBatchSampler is made on first use (torch)
    ("benchmark/training/__init__.py", "importlib"),  # training.config must not import torch
    ("results/cli.py", "results"),  # the HTML page's plots load matplotlib; validate never does
    ("benchmark/data/release/download.py", "huggingface_hub"),  # only `download` reaches the hub
    ("benchmark/config/run.py", "torch"),  # a config naming CUDA is checked; others load torch-free
}
LAZY_FILES = ("benchmark/cli/",)  # the CLI imports per command, so --help starts fast


def test_imports_sit_at_the_top_unless_said_why():
    problems = []
    for package in PACKAGES:
        for path in _sources(package):
            name = str(path.relative_to(REPO))
            if name.startswith(LAZY_FILES):
                continue
            problems += [
                f"{name} imports {module} inside a function"
                for module, module_level in _imports(path)
                if not module_level and (name, module.split(".")[0]) not in LAZY_ALLOWED
            ]
    assert problems == []


def test_the_rules_see_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The parser must catch the imports the rules are about, or the tests above prove nothing."""
    fake = tmp_path / "results" / "sub.py"
    fake.parent.mkdir()
    fake.write_text(
        "from . import tables\n\ndef f():\n    import torch\n    from benchmark import runner\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _imports(fake) == [
        ("results.tables", True),
        ("torch", False),
        ("benchmark.runner", False),
    ]


def test_list_prints_no_third_party_banner():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "maml" in done.stdout
    assert done.stderr == ""
