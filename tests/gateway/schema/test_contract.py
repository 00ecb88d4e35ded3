"""The served schema is the checked-in `schema.graphql`: clients and outside checks rely
on its operation names, arguments and shapes, so a change to it must be deliberate (run
`nova schema` and commit the file with the change)."""

from __future__ import annotations

from pathlib import Path

from deployments.cli import build_parser
from deployments.cli.stack import SCHEMA_FILE, cmd_schema, served_schema


def test_served_schema_is_the_checked_in_file() -> None:
    assert SCHEMA_FILE.read_text() == served_schema(), (
        "the served schema differs from schema.graphql; run `nova schema` if the change "
        "is meant, and commit the file with it"
    )


def test_schema_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text(served_schema().replace("type Query", "type Queries"))
    args = build_parser().parse_args(["schema", "--check", "--output", str(stale)])
    assert cmd_schema(args) == 1
    args = build_parser().parse_args(["schema", "--output", str(stale)])
    assert cmd_schema(args) == 0
    assert stale.read_text() == served_schema()
