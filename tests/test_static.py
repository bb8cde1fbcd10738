"""The code stays ruff-clean, ruff-formatted and mypy-clean: the tools run here, so CI fails
when any of them finds something."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", "routing_app", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    result = _run(str(BIN / "ruff"), "format", "--check", "routing_app", "tests")
    assert result.returncode == 0, "run `ruff format routing_app tests`:\n" + result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = _run(str(BIN / "mypy"), "routing_app", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


# The packages by layer, lowest first: a module may import from its own layer and those below,
# never from above. The data flow (client -> usage -> windows -> planner -> routes -> client)
# closes a loop through Kafka, not through imports: the producer reads routes as records.
LAYERS: list[set[str]] = [
    {"config", "connection", "codec"},  # settings, Kafka and registry access
    {"routes"},  # the route model, its codec, the record kinds around it
    {"usage", "windows", "load"},  # observation: what producers report, windows, broker load
    {"client", "planner"},  # routing records; deciding placements (pure)
    {"control", "topics", "metrics", "audit"},  # commands, topic specs/ACLs, metrics, replay
    {"app", "stack"},  # the Faust worker; the local stack
    {"simulate", "demo", "bench"},  # tools built on all of the above
    {"cli", "__main__", "__init__"},  # the command line, at the top (and the package itself)
]


def _package_imports() -> dict[str, set[str]]:
    """routing_app package -> the other routing_app packages its modules import."""
    import ast

    found: dict[str, set[str]] = {}
    for path in (ROOT / "routing_app").rglob("*.py"):
        parts = path.relative_to(ROOT / "routing_app").with_suffix("").parts
        package = parts[0]
        targets = found.setdefault(package, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("routing_app."):
                    targets.add(name.split(".")[1])
        targets.discard(package)
    return found


def test_imports_never_point_up_a_layer() -> None:
    layer_of = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    imports = _package_imports()
    unknown = set(imports) - set(layer_of)
    assert not unknown, f"packages without a layer in LAYERS: {sorted(unknown)}"
    upward = sorted(
        f"{package} -> {target}"
        for package, targets in imports.items()
        for target in targets
        if layer_of.get(target, -1) > layer_of[package]
    )
    assert not upward, f"imports from a higher layer: {upward}"
