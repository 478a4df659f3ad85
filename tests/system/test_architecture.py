"""The tree shows the data flow (docs/ARCHITECTURE.md): checked from the source, with ast, never by importing it.

* no import cycle between subpackages (a module's node is its package; the top-level modules of ``synchub``
  are nodes of their own), and the layers hold: ``agent.core`` imports nothing of synchub, ``agent.clock`` only
  the core, drivers never the agent's pipeline, config, collector, deploy or commands;
* no module of agent/, drivers/, models/, bench/ over 400 lines; every package's ``__init__`` says what lives
  there; no module named after a standard library module;
* imports at module top: inside a function only the heavy optional dependencies (an extra each).
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest
from support.paths import ROOT

MAPPED = {"synchub": "synchub", "agent": "synchub.agent", "drivers": "synchub.drivers", "models": "synchub.models",
          "bench": "synchub.bench", "firmware": "synchub.firmware", "systemd": "synchub.systemd",
          "examples": "synchub.examples"}
#: imported where they are used, each with the extra that brings it (synchub.extras)
LAZY = {"onnxruntime", "torch", "onnx", "gpiod", "RPi", "matplotlib", "pylsl", "nats", "nkeys", "soundfile", "pyxdf", "av"}
MAX_LINES = 400


def _modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """module name -> (path, is a package's __init__)."""
    out = {}
    for top, pkg in MAPPED.items():
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT / top).with_suffix("")
            parts = list(rel.parts)
            init = parts[-1] == "__init__"
            if init:
                parts = parts[:-1]
            if not (p.parent / "__init__.py").exists():
                continue  # not in a package (scripts, C harness folders)
            out[".".join([pkg, *parts])] = (p, init)
    return out


MODULES = _modules()
PACKAGES = {m for m, (_, init) in MODULES.items() if init}


def node(module: str) -> str:
    """The import-graph node of a module: its package (a package is its own node); ``synchub``'s own modules are
    nodes of their own."""
    if module in PACKAGES:
        return module
    parent = module.rsplit(".", 1)[0]
    return module if parent == "synchub" else parent


def _target(module: str, name: str | None) -> str | None:
    """The synchub module an import refers to (``from pkg import submodule`` is the submodule)."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported synchub module, line, at module level) of every import statement of ``module``."""
    path, init = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if init else module.rsplit(".", 1)[0]
    out = []
    toplevel = {id(n) for n in tree.body}
    for stmt in tree.body:  # statements guarded at module level (version switches, TYPE_CHECKING) count as top
        if isinstance(stmt, (ast.If, ast.Try)):
            toplevel |= {id(n) for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            targets = [(a.name, None) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                base_pkg = package.split(".")
                base_pkg = base_pkg[: len(base_pkg) - (n.level - 1)]
                base = ".".join(base_pkg + ([n.module] if n.module else []))
            targets = [(base, a.name) for a in n.names]
        else:
            continue
        for mod, name in targets:
            if not mod.startswith("synchub"):
                out.append((mod, n.lineno, id(n) in toplevel))
                continue
            t = _target(mod, name)
            if t is not None:
                out.append((t, n.lineno, id(n) in toplevel))
    return out


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for m in MODULES:
        src = node(m)
        g.setdefault(src, set())
        for t, _, _ in imports(m):
            if t.startswith("synchub") and node(t) != src:
                g[src].add(node(t))
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_there_is_no_import_cycle_between_subpackages():
    found = cycles(graph())
    assert not found, "import cycles between subpackages: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


LAYERS = {  # package prefix -> what of synchub it may import (prefixes), besides itself
    "synchub.agent.core": (),
    "synchub.agent.clock": ("synchub.agent.core",),
}
FORBIDDEN = {  # package prefix -> what it must not import
    "synchub.drivers": ("synchub.agent.pipeline", "synchub.agent.config", "synchub.agent.collector",
                        "synchub.agent.deploy", "synchub.agent.cli", "synchub.bench"),
    "synchub.agent": ("synchub.bench",),
}


@pytest.mark.parametrize("pkg", sorted(LAYERS))
def test_the_lower_layers_import_nothing_above_them(pkg):
    bad = [(m, t, line) for m in MODULES if m.startswith(pkg) for t, line, _ in imports(m)
           if t.startswith("synchub") and not t.startswith(pkg) and not t.startswith(LAYERS[pkg])]
    assert not bad, f"{pkg} imports upward: " + ", ".join(f"{m}:{line} -> {t}" for m, t, line in bad)


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_forbidden_imports(pkg):
    bad = [(m, t, line) for m in MODULES if m.startswith(pkg) for t, line, _ in imports(m) if t.startswith(FORBIDDEN[pkg])]
    assert not bad, f"{pkg} must not import {FORBIDDEN[pkg]}: " + ", ".join(f"{m}:{line} -> {t}" for m, t, line in bad)


def test_imports_are_at_module_top_except_heavy_optional_ones():
    """models/ is left out: the training work of issue 14 is under way there (two lazy imports of its own modules,
    train -> export -> runner)."""
    bad = [(m, t, line) for m in MODULES if not m.startswith("synchub.models") for t, line, top in imports(m)
           if not top and t.split(".")[0] not in LAZY]
    assert not bad, "function-level imports: " + ", ".join(f"{m}:{line} ({t})" for m, t, line in bad)


def test_no_module_is_longer_than_400_lines():
    long = [(str(p.relative_to(ROOT)), n) for p, _ in MODULES.values() if p.relative_to(ROOT).parts[0] in
            ("agent", "drivers", "models", "bench") and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_package_says_what_lives_there():
    silent = [m for m in PACKAGES if not ast.get_docstring(ast.parse(MODULES[m][0].read_text()))]
    assert not silent, f"packages whose __init__ has no docstring: {sorted(silent)}"


def test_no_module_is_named_after_a_standard_library_module():
    clash = [m for m in MODULES if m.rsplit(".", 1)[-1] in sys.stdlib_module_names]
    assert not clash, f"modules named after the standard library's: {clash}"
