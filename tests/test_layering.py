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
# The file primitives (canonical JSON, sha256, atomic write) that results shares with the others.
SHARED = "episodes.storage"
# Inside benchmark: modules the lower stages must not reach up to.
BENCHMARK_LOWER = ("benchmark/backbones.py", "benchmark/part_head.py", "benchmark/device.py",
                   "benchmark/config.py", "benchmark/cache.py", "benchmark/features.py",
                   "benchmark/feature_cache.py", "benchmark/data", "benchmark/training")
BENCHMARK_UPPER = ("benchmark.runner", "benchmark.__main__", "benchmark.stages")
# ... and the model and feature code never reaches into training (training builds on them).
BELOW_TRAINING = ("benchmark/backbones.py", "benchmark/part_head.py", "benchmark/device.py",
                  "benchmark/features.py", "benchmark/feature_cache.py", "benchmark/cache.py")


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


def test_lower_benchmark_stages_never_import_the_orchestration():
    problems = []
    for lower in BENCHMARK_LOWER:
        paths = [REPO / lower] if lower.endswith(".py") else _sources(lower)
        for path in paths:
            problems += [f"{path.relative_to(REPO)} imports {module}"
                         for module, _ in _imports(path)
                         if module.startswith(BENCHMARK_UPPER)]
    for lower in BELOW_TRAINING:
        problems += [f"{lower} imports {module}" for module, _ in _imports(REPO / lower)
                     if module.startswith("benchmark.training")]
    assert problems == []


# (file, imported top-level name) allowed inside a function, each for a reason said there.
LAZY_ALLOWED = {
    ("baselines/maml.py", "learn2learn"),  # gym's banner and seconds of import, for one learner
    ("episodes/adapters.py", "torch"),  # episodes depends on numpy only
    ("episodes/adapters.py", "learn2learn"),
    ("benchmark/__init__.py", "benchmark"),  # `import benchmark` must not import torch
    ("benchmark/training/__init__.py", "importlib"),  # training.config must not import torch
    ("results/cli.py", "results"),  # the HTML page's plots load matplotlib; validate never does
    ("benchmark/data/download.py", "huggingface_hub"),  # only `download` reaches the hub
    ("benchmark/config.py", "torch"),  # a config naming CUDA is checked; others load torch-free
}
LAZY_FILES = ("benchmark/__main__.py",)  # the CLI imports per command, so --help starts fast


def test_imports_sit_at_the_top_unless_said_why():
    problems = []
    for package in PACKAGES:
        for path in _sources(package):
            name = str(path.relative_to(REPO))
            if name in LAZY_FILES:
                continue
            problems += [f"{name} imports {module} inside a function"
                         for module, module_level in _imports(path)
                         if not module_level and (name, module.split(".")[0]) not in LAZY_ALLOWED]
    assert problems == []


def test_the_rules_see_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The parser must catch the imports the rules are about, or the tests above prove nothing."""
    fake = tmp_path / "results" / "sub.py"
    fake.parent.mkdir()
    fake.write_text("from . import tables\n\ndef f():\n    import torch\n    from benchmark import runner\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _imports(fake) == [("results.tables", True), ("torch", False),
                              ("benchmark.runner", False)]


def test_list_prints_no_third_party_banner():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "benchmark", "list"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "maml" in done.stdout
    assert done.stderr == ""
