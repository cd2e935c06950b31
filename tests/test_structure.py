"""The package's shape: no import circle between its modules; the training settings load without torch.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): an import
moved into a function to dodge a circle is still a circle in the design. The sources are read with ``ast``, not
imported, so the graph is the one written. ``engines/`` and ``plugins/`` install as ``cyc_engines`` and
``cyc_plugins``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"cyclegan_cli": ROOT / "cyclegan_cli", "cyc_engines": ROOT / "engines", "cyc_plugins": ROOT / "plugins"}


def module_files() -> dict[str, Path]:
    """Every module of the three packages and their subpackages, at any depth, by its import name (a package by
    its own name, for ``__init__.py``)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules among ``known`` that the module ``name`` (source at ``path``) imports anywhere in its source.
    ``from X import Y`` imports the module ``X.Y`` where there is one, else ``X``; relative imports are resolved."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that lies on any, without repeats: each as the list of modules
    around it, the first one again at the end."""
    found, seen = [], set()
    for start in sorted(graph):
        paths, visited, cycle = [[start]], {start}, None
        while paths and cycle is None:  # breadth first: the shortest way back to ``start``
            longer = []
            for path in paths:
                for nxt in sorted(graph[path[-1]]):
                    if nxt == start:
                        cycle = [*path, start]
                        break
                    if nxt not in visited:
                        visited.add(nxt)
                        longer.append([*path, nxt])
                if cycle is not None:
                    break
            paths = longer
        if cycle is not None and frozenset(cycle) not in seen:
            seen.add(frozenset(cycle))
            found.append(cycle)
    return found


def test_every_kind_of_import_is_seen(tmp_path):
    """Module level, in a function, under TYPE_CHECKING, relative, across packages; a package is not its modules."""
    source = tmp_path / "fake.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import torch\n"
        "from cyclegan_cli import errors\n"
        "from .atomic import atomic_path\n"
        "from . import data, framing\n"
        "import cyc_engines.torch as engine\n"
        "if TYPE_CHECKING:\n"
        "    from cyclegan_cli.training.loop import TrainState\n"
        "def later():\n"
        "    import cyc_plugins.images\n"
    )
    imported = {f"cyclegan_cli.{name}" for name in ("errors", "atomic", "data", "framing", "training.loop")}
    imported |= {"cyc_engines.torch", "cyc_plugins.images"}
    known = imported | {"cyclegan_cli", "cyclegan_cli.fake", "cyclegan_cli.models.architectures"}
    assert imported_modules("cyclegan_cli.fake", source, known) == imported
    inside = tmp_path / "inside.py"  # relative imports from a module of a subpackage
    inside.write_text("from . import loop\nfrom ..errors import CycError\n")
    assert imported_modules("cyclegan_cli.training.inside", inside, known) == {
        "cyclegan_cli.training.loop",
        "cyclegan_cli.errors",
    }
    graph = import_graph()
    assert "cyclegan_cli.plugin_api" in graph["cyc_engines.torch"]
    assert "cyclegan_cli.models.architectures" in graph["cyclegan_cli.models.weights"]  # under TYPE_CHECKING


def test_a_circle_is_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]


def test_no_import_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


def test_the_training_config_imports_no_torch():
    """``cyc train --help`` reads its defaults from it, and a tool may check settings without loading torch."""
    code = "import sys, cyclegan_cli.training.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_module_is_seen():
    """The graph cannot silently stop seeing a module: every ``.py`` file under the three folders is in it, and
    every folder of modules is a package (an ``__init__.py``), so that it installs and imports by its name."""
    files = {path for folder in PACKAGES.values() for path in folder.rglob("*.py")}
    assert set(module_files().values()) == files
    assert all((path.parent / "__init__.py").is_file() for path in files)


# The rooms from the bottom up: a module may import its own room and the rooms below it, never one above.
LAYERS = (
    "shared",  # the modules at the top of cyclegan_cli
    "cyclegan_cli.models",
    "cyclegan_cli.plugin_api",
    "cyc_plugins",
    "cyclegan_cli.hub",
    "cyclegan_cli.export",
    "cyc_engines",
    "cyclegan_cli.translation",
    "cyclegan_cli.evaluation",
    "cyclegan_cli.training",
    "cyclegan_cli.commands",
    "entry",  # cli, __main__, demo
)
ENTRY = {"cyclegan_cli.cli", "cyclegan_cli.__main__", "cyclegan_cli.demo"}


def room(module: str) -> str:
    """The room of ``module`` (one of :data:`LAYERS`)."""
    if module in ENTRY:
        return "entry"
    for name in LAYERS:
        if module == name or module.startswith(f"{name}."):
            return name
    return "shared"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module in a room above the importer's, as "importer -> imported"."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return [
        f"{importer} ({room(importer)}) -> {imported} ({room(imported)})"
        for importer, targets in sorted(graph.items())
        for imported in sorted(targets)
        if rank[room(imported)] > rank[room(importer)]
    ]


def test_an_upward_import_is_found_and_named():
    graph = {
        "cyclegan_cli.training.loop": {"cyclegan_cli.commands.train", "cyclegan_cli.models.weights"},
        "cyc_engines.torch": {"cyclegan_cli.commands.run", "cyclegan_cli.errors"},
        "cyclegan_cli.errors": {"cyclegan_cli.translation.jobs"},
        "cyclegan_cli.cli": {"cyclegan_cli.commands.run"},
    }
    assert upward_imports(graph) == [
        "cyc_engines.torch (cyc_engines) -> cyclegan_cli.commands.run (cyclegan_cli.commands)",
        "cyclegan_cli.errors (shared) -> cyclegan_cli.translation.jobs (cyclegan_cli.translation)",
        "cyclegan_cli.training.loop (cyclegan_cli.training) -> cyclegan_cli.commands.train (cyclegan_cli.commands)",
    ]


def test_every_room_is_a_real_subpackage_and_no_import_runs_up():
    graph = import_graph()
    packages = {name for name, path in module_files().items() if path.name == "__init__.py"}
    assert {
        name for name in LAYERS if name.startswith("cyclegan_cli.") and name != "cyclegan_cli.plugin_api"
    } <= packages
    assert packages - {"cyclegan_cli", "cyc_engines", "cyc_plugins"} <= set(LAYERS), "a subpackage without a room"
    found = upward_imports(graph)
    assert not found, "imports that run up the rooms:\n" + "\n".join("  " + line for line in found)


def test_the_run_folder_layout_is_written_in_one_place():
    """The names of a run folder's files appear in code only in ``models/run_folder.py``: every other module asks
    a ``RunFolder`` (docstrings may name them, in backquotes)."""
    names = (
        '"last.pt"',
        '"checkpoints"',
        '"config.json"',
        '"metrics.csv"',
        '"samples"',
        "step_{",
        '"runs"',
        '/ "export"',
    )
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in module_files().values()
        if path.name != "run_folder.py"
        for name in names
        if name in path.read_text()
    ]
    assert not found, "run-folder paths built outside models/run_folder.py:\n" + "\n".join(found)


def test_no_function_body_is_over_75_lines():
    """A longer body is a knot: cut it into named steps (docstrings do not count)."""
    long = []
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
                lines = node.end_lineno - body[0].lineno + 1
                if lines > 75:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)
