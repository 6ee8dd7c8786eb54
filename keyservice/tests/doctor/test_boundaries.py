"""What the doctor's tool may depend on: escrow, export and the standard library.

No HTTP client, no socket: the tool must never be able to send a private key or a
patient key anywhere, even by a careless future change. A recovered patient key is
turned into text only by carevault_crypto.export, the library's one reviewed way out.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import carevault_keyservice.doctor

PACKAGE = Path(carevault_keyservice.doctor.__file__).parent
ALLOWED = {"carevault_crypto.escrow", "carevault_crypto.export"}
NETWORK = {"socket", "ssl", "http", "urllib", "ftplib", "smtplib", "asyncio", "xmlrpc"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_tool_imports_only_escrow_export_and_the_standard_library() -> None:
    sources = sorted(PACKAGE.glob("*.py"))
    assert {p.name for p in sources} >= {"__init__.py", "cli.py", "__main__.py"}
    for path in sources:
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("carevault_keyservice.doctor") or top == "__future__":
                continue
            if top in sys.stdlib_module_names:
                assert top not in NETWORK, f"{path.name} imports {name}"
                continue
            assert name in ALLOWED, f"{path.name} imports {name}"
