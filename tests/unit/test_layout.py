"""The layering docs/ARCHITECTURE.md promises, checked on the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINER_DOOR = {"app/training/client.py", "app/training/daemon.py", "app/sampler/pool.py"}
"""The only app modules that import trainer.*: the client (the door every other module goes
through), the daemon (the process that hosts the training engine), and the gateway's engine
pool, which shares the rollouts' connection policy (`trainer.envs.sampler_http`, no torch)."""


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_training_door_imports_the_trainer() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "app").rglob("*.py"))
        if "trainer" in imported_packages(p) and str(p.relative_to(ROOT)) not in TRAINER_DOOR
    ]
    assert offenders == []


def test_the_trainer_never_imports_the_app() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "trainer").rglob("*.py"))
        if "app" in imported_packages(p)
    ]
    assert offenders == []


def test_routers_call_no_repository() -> None:
    """Routers parse, authorise and call services; every query lives behind a service."""
    offenders = [
        f"{p.relative_to(ROOT)}: {node.module}"
        for p in sorted((ROOT / "app").rglob("router.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(".repository")
    ]
    assert offenders == []


def test_no_test_module_imports_another() -> None:
    """Tests share code through tests/helpers only, never through another test or a conftest."""
    offenders = [
        f"{p.relative_to(ROOT)}: {node.module}"
        for p in sorted((ROOT / "tests").rglob("*.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("tests.")
        and not (node.module or "").startswith("tests.helpers")
    ]
    assert offenders == []


MAX_PARAMETERS = 8
"""The most parameters a function in app/ takes (``self`` and ``cls`` not counted): more means
the values belong together in a typed object (`app.cycles.stages`, `LoraSlots`, ...)."""


def test_no_function_in_app_takes_more_than_eight_parameters() -> None:
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            count = len([a for a in named if a.arg not in ("self", "cls")])
            count += bool(args.vararg) + bool(args.kwarg)
            if count > MAX_PARAMETERS:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({count})")
    assert offenders == []


WEB = {"app/deps.py", "app/main.py", "app/web.py"}
"""The HTTP layer above the domains, with every domain's `router.py`: it may import any domain."""
TOP = {"runtime", "cli", "deps", "main", "web"}
"""What wires processes and the HTTP surface together; no domain imports these."""
KNOWN_TWO_WAY = {("cycles", "fine_tuning")}
"""A fine-tuning job runs as a learning cycle (its plan, events and waiting jobs come from
`fine_tuning`, its stages from `cycles`): the one pair of domains not yet in one order
(docs/ARCHITECTURE.md, "Dependencies")."""


def domain_edges() -> dict[str, set[str]]:
    """Domain -> the app domains its service layer imports (at any depth of a module)."""
    edges: dict[str, set[str]] = {}
    for path in (ROOT / "app").rglob("*.py"):
        relative = path.relative_to(ROOT).as_posix()
        if path.name == "router.py" or relative in WEB:
            continue
        parts = path.relative_to(ROOT / "app").parts
        domain = parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("app.") and name.split(".")[1] != domain:
                    edges.setdefault(domain, set()).add(name.split(".")[1])
    return edges


def test_no_domain_imports_the_layers_above_it() -> None:
    upward = {
        (domain, target)
        for domain, targets in domain_edges().items()
        if domain not in TOP
        for target in targets & TOP
    }
    assert upward == set(), upward


def test_domain_dependencies_point_one_way() -> None:
    """No two domains import each other, and no longer loop runs through several; the one
    known pair is listed, and must stay the only one."""
    edges = {d: t - TOP for d, t in domain_edges().items() if d not in TOP}
    two_way = {
        tuple(sorted((a, b))) for a, ts in edges.items() for b in ts if a in edges.get(b, ())
    }
    assert two_way == KNOWN_TWO_WAY, two_way
    for a, b in KNOWN_TWO_WAY:
        edges[a].discard(b)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for domain in sorted(edges):
        if domain not in state:
            visit(domain, [])
