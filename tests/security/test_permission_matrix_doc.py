"""docs/security-access.md shows THE permission matrix: parse its table and
compare it, cell by cell, with the one in code."""

from __future__ import annotations

from pathlib import Path

from carevault_api.auth.principal import Role
from carevault_api.authorization.matrix import ADMINISTRATIVE, MATRIX, Permission, Reach

DOC = Path(__file__).resolve().parents[2] / "docs" / "security-access.md"


def _doc_table() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- permission-matrix:start -->", 1)[1].split("<!-- permission-matrix:end -->", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block.strip().splitlines()]
    return [row for row in rows if not set("".join(row)) <= set("-: ")]


def test_the_documented_matrix_is_the_one_in_code() -> None:
    header, *rows = _doc_table()
    assert header[0] == "permission" and header[-1] == "second factor"
    roles = [Role(name) for name in header[1:-1]]
    assert set(roles) == set(Role), "every role has a column"
    documented = {Permission(row[0]): dict(zip(roles, (Reach(c) for c in row[1:-1]), strict=True)) for row in rows}
    assert documented == MATRIX
    assert {Permission(row[0]) for row in rows if row[-1] == "required"} == ADMINISTRATIVE
