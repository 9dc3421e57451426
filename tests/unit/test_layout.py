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
