"""The tree keeps the shape the docs describe: every SQL statement lives in `storage`, and
no module grows past what one reader holds in mind. Pure checks over the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actors", "deployments", "gateway", "ranking", "storage")
MAX_MODULE_LINES = 400
GENERATED = ("_pb2.py", "_pb2_grpc.py")
SQL = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
    r"|WITH\s+\w+\s+AS\s*\(|COPY\s)",
    re.DOTALL,
)
# The embedded stack administers the server itself (it creates the database with psql
# before Nova can connect); that is not Nova's data.
SERVER_ADMIN = ("deployments/stack/postgres.py",)


def _modules(*packages: str) -> list[Path]:
    return sorted(
        path
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if not path.name.endswith(GENERATED)
    )


def _sql_literals(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]


def test_sql_lives_only_in_storage() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules("actors", "deployments", "gateway", "ranking")
        if str(path.relative_to(ROOT)) not in SERVER_ADMIN
        for line in _sql_literals(path)
    }
    assert not found, f"SQL outside storage/ (move it into a repository): {sorted(found)}"


def test_the_sql_check_finds_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('Q = """\n    SELECT id FROM posts WHERE id = $1\n"""\nX = "Select a file"\n')
    assert _sql_literals(sample) == [1]


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    long = {
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in _modules(*PACKAGES)
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these along their seams: {sorted(long)}"
