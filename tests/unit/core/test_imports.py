"""Every module imports alone, and agentmem's own modules import one another without a circle.

A module that works only when another was imported first (an import circle resolved by
luck, a name taken from a half-initialised module) fails when a user imports it first; in
one test process everything is long imported, so each module is imported here in a fresh
interpreter of its own.

The circle rule: an import counts when it runs as the module loads, at its top level
(inside a top-level ``try`` or ``if`` too), and **also under** ``if TYPE_CHECKING:``, since a
circle a type checker follows is still two modules that each need the other; an import
inside a function counts not, being deferred until the function runs (that is how
`agentmem.cli` keeps ``--help`` free of torch). ``from package import name`` depends on
``package.name`` when that is a module, else on the package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# pyproject's package-dir: each top-level folder and the package it is installed as.
FOLDERS = {"agentmem": "agentmem", "tools": "agentmem.tools", "adapters": "agentmem.adapters", "eval": "agentmem.eval"}


def _modules() -> dict[str, Path]:
    """Every module of the four folders, by its dotted name (a package by its own name)."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _loading_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run as a module loads (see the module docstring for the rule)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try)):
            blocks = [node.body, node.orelse, getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                found += _loading_imports(block)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of agentmem and the modules of agentmem it imports as it loads."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = []
        for node in _loading_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif node.level == 0 and node.module:
                targets += [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    for alias in node.names
                ]
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (its modules in import order, the first again at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        path.append(name)
        for dep in sorted(graph[name]):
            if dep in path:
                return path[path.index(dep) :] + [dep]
            if dep not in done and (cycle := visit(dep)) is not None:
                return cycle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        if name not in done and (cycle := visit(name)) is not None:
            return cycle
    return None


def test_the_rule_finds_a_circle_and_its_modules():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    graph = import_graph()
    assert set(graph) >= {"agentmem", "agentmem.core", "agentmem.tools.spec", "agentmem.adapters.server.app"}
    assert "agentmem.adaptation.adapter" in graph["agentmem.backbone"]  # under TYPE_CHECKING: counted
    assert "agentmem.core" not in graph["agentmem.cli"]  # inside functions: deferred
    assert "agentmem.adaptation.corpus" in graph["agentmem.eval.bench_forgetting"]


def test_agentmem_has_no_import_circle():
    assert find_cycle(import_graph()) is None


# Run as a fresh interpreter: imports the third-party modules (argv 1), never agentmem, then
# forks one child per agentmem module (argv 2), as many at once as there are cores, in which
# that module is the first of agentmem's to load. Prints the failures as JSON.
_FORKING_IMPORTER = """
import importlib, json, os, sys, tempfile, traceback
third_party, modules = sys.argv[1].split(","), sys.argv[2].split(",")
for name in third_party:  # "module" or "module:attribute" (transformers loads its names lazily)
    module, _, attribute = name.partition(":")
    try:
        getattr(importlib.import_module(module), attribute) if attribute else importlib.import_module(module)
    except (ImportError, AttributeError):
        pass  # then the agentmem module that needs it fails below, naming it
assert not [m for m in sys.modules if m.split(".")[0] == "agentmem"], "agentmem imported before the fork"
logs, running, failed = tempfile.mkdtemp(), {}, {}
def reap():
    pid, status = os.wait()
    module = running.pop(pid)
    if status:
        failed[module] = open(os.path.join(logs, module)).read().strip().splitlines()[-1:]
for module in modules:
    if len(running) >= (os.cpu_count() or 2):
        reap()
    pid = os.fork()
    if pid == 0:
        code = 0
        with open(os.path.join(logs, module), "w") as log:
            try:
                importlib.import_module(module)
            except BaseException:
                traceback.print_exc(file=log)
                code = 1
        os._exit(code)
    running[pid] = module
while running:
    reap()
print(json.dumps(failed))
"""


def _third_party(modules: dict[str, Path]) -> list[str]:
    """What agentmem's modules import as they load from outside agentmem and the standard
    library: ``module`` or ``module:name``."""
    names = set()
    for path in modules.values():
        for node in _loading_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            else:
                named = [f"{node.module}:{alias.name}" for alias in node.names] if node.module else []
            names |= {n for n in named if n.split(".")[0].split(":")[0] not in sys.stdlib_module_names | {"agentmem"}}
    return sorted(names)


def test_every_module_imports_alone(tmp_path):
    # A fresh interpreter per module would import torch and transformers 60 times (agentmem.core
    # alone takes about 10 s of CPU on the project's 2 cores). What goes wrong when a module
    # is imported first is agentmem's own order, so one fresh interpreter imports the
    # third-party modules once, and each module is imported in a child of it in which no
    # module of agentmem is loaded yet. Run outside the checkout: the installed layout.
    modules = _modules()
    command = [sys.executable, "-c", _FORKING_IMPORTER, ",".join(_third_party(modules)), ",".join(sorted(modules))]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}
    roots = {name.split(".")[0].split(":")[0] for name in _third_party(modules)}
    assert len(modules) > 60 and {"torch", "transformers", "fastapi", "langchain_core"} <= roots
