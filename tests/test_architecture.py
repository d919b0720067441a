"""The package's import graph reads as its design: imports point down the layers and never loop.

Layers, top to bottom: cli -> ops -> mesh -> coord -> delivery -> registry -> bottom. Every
import counts, including the lazy ones inside functions (they are how the hot paths keep their
import budget, and a lazy upward import is still an upward dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "agent_mesh"
# coord (the authority's side of locks, boards and logs) sits under the mesh, which
# answers its rpc op and reaches the other hosts' authorities (mesh/coord.py).
LAYERS = ["cli", "ops", "mesh", "coord", "delivery", "registry", "bottom"]
# The lowest modules: they import nothing from the package (errors may read __version__), but
# errors' printable reads escape sequences with screen, the leaf that holds the parser, and
# model takes Outcome and printable from errors.
LEAVES = {"errors", "paths", "model", "clock", "screen"}
LEAF_EDGES = {("errors", "screen"), ("model", "errors")}


def module_name(path: Path) -> str:
    """agent_mesh/mesh/send.py -> mesh.send; agent_mesh/__init__.py -> __init__."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer(mod: str) -> str:
    """The layer a module belongs to: its subpackage, or `bottom` for the flat modules."""
    head = mod.split(".")[0]
    return head if head in LAYERS else "bottom"


def resolve(name: str) -> str | None:
    """The package module an absolute dotted name refers to (the longest existing prefix)."""
    if name == "agent_mesh":
        return "__init__"
    if not name.startswith("agent_mesh."):
        return None
    parts = name.split(".")[1:]
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return "__init__"


def imports_of(mod: str) -> dict[str, int]:
    """Every package module `mod` imports, anywhere in its body, with the first line it does so."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg_parts = ["agent_mesh", *mod.split(".")]
    if path.name != "__init__.py" or mod == "__init__":
        pkg_parts.pop()  # a plain module's relative imports start from its package
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        target = resolve(name)
        if target is not None and target != mod:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                # `from agent_mesh.mesh import send` names a module; `from x import f` a symbol.
                full = f"{prefix}.{alias.name}"
                add(full if full.removeprefix("agent_mesh.") in MODULES else prefix, node.lineno)
    return found


GRAPH = {mod: imports_of(mod) for mod in MODULES}


def test_the_graph_sees_the_package() -> None:
    """A sanity check on the parser: known edges are found, lazy ones included."""
    assert "registry.view" in MODULES and "cli.main" in MODULES
    assert any(GRAPH[m] for m in MODULES)
    assert "errors" in GRAPH["cli.notify"]


def test_no_upward_import() -> None:
    """Each module imports only its own layer or layers below it."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = [f"{mod} -> {dep} (line {line})"
           for mod, deps in GRAPH.items() for dep, line in sorted(deps.items())
           if rank[layer(dep)] < rank[layer(mod)]]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_leaves_import_nothing_from_the_package() -> None:
    """errors, paths, model, clock, screen sit under everything: only __version__ may come from
    above (and errors' printable from screen, errors' Outcome into model)."""
    bad = [f"{mod} -> {dep}" for mod in sorted(LEAVES) for dep in GRAPH[mod]
           if dep != "__init__" and (mod, dep) not in LEAF_EDGES]
    assert not bad, "\n".join(bad)


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle() -> None:
    """No two modules import each other, directly or round a loop, lazily or not."""
    found = cycles()
    detail = ["  " + ", ".join(c) + "\n    " + "; ".join(
        f"{a}->{b}" for a in c for b in GRAPH[a] if b in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


# --- one home per concept ---------------------------------------------------------------

MAX_LINES = 500
# None may be: issue 19 allowed ops/setup.py if it stayed one straight procedure; it was split.
LONG_MODULES: set[str] = set()


def test_no_module_is_over_500_lines() -> None:
    """A module past 500 lines holds more than one concept: split it."""
    long = {mod: n for mod, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= LONG_MODULES, {m: n for m, n in long.items() if m not in LONG_MODULES}


def test_agent_names_are_written_only_in_receivers() -> None:
    """Every per-agent rule goes through receivers.TRAITS: a command name of a known agent
    ("claude", "codex", ...) as a string literal anywhere else is a rule kept elsewhere."""
    from agent_mesh.receivers import TRAITS

    names = {name for row in TRAITS for name in row.names}
    assert {"claude", "claude-code", "codex", "aider"} <= names
    found = [f"{mod}:{node.lineno}: {node.value!r}"
             for mod, path in MODULES.items() if mod != "receivers"
             for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and node.value.strip().lower() in names]
    assert not found, "agent names outside receivers.py:\n" + "\n".join(found)
# --- thread fan-outs live in Group ---------------------------------------------------------
# mesh/group.py is where work over several hosts runs in parallel (deadline, late hosts
# closed, one answer per host). A module that starts threads itself is a fan-out of its
# own, unless listed here with why it is none.
FANOUT_HOME = "mesh.group"
THREADS_ALLOWED = {
    "delivery.pane": "batches of tmux commands to this host's own tmux server, not hosts",
    "cli.mcp_stdio": "one MCP session's stdin reader and stdout filter (pipes), not hosts",
}


def thread_starts(mod: str) -> list[int]:
    """Lines where mod makes a thread: threading.Thread, ThreadPoolExecutor (or
    anything from concurrent.futures), _thread.start_new_thread, however imported."""
    tree = ast.parse(MODULES[mod].read_text())
    pools = ("concurrent", "multiprocessing.pool")
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            names = []
        if any(n.startswith(pools) for n in names):
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute | ast.Name):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if name in ("Thread", "ThreadPoolExecutor", "start_new_thread", "ThreadPool"):
                lines.append(node.lineno)
    return sorted(set(lines))


def test_the_fanout_check_sees_group() -> None:
    """A sanity check on the detector: Group's own threads are found."""
    assert thread_starts(FANOUT_HOME)


def test_no_thread_fanout_outside_group() -> None:
    """Work over several hosts runs through mesh.group.Group, never threads of its own."""
    bad = [f"{mod} (lines {thread_starts(mod)})" for mod in sorted(MODULES)
           if mod != FANOUT_HOME and mod not in THREADS_ALLOWED and thread_starts(mod)]
    assert not bad, ("threads outside mesh/group.py (use Group.each or Group.start, or "
                     "list the module in THREADS_ALLOWED with why it is no fan-out):\n"
                     + "\n".join(bad))
    stale = [mod for mod in THREADS_ALLOWED if mod not in MODULES or not thread_starts(mod)]
    assert not stale, f"allowed but starts no thread (drop it from THREADS_ALLOWED): {stale}"
