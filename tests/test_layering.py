"""The package layering of ARCHITECTURE.md holds: adapters import nothing of the gateway but its
error types, and identity imports neither gateway nor adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def imports(package: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


@pytest.mark.parametrize(
    ("package", "forbidden", "allowed"),
    [
        ("adapters", ("gateway", "identity"), ("gateway.errors",)),
        ("identity", ("gateway", "adapters"), ()),
    ],
)
def test_layering(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [
        (where, module)
        for where, module in imports(package)
        if module.split(".")[0] in forbidden and module not in allowed
    ]
    assert bad == []
