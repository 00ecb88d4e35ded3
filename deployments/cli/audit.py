"""`nova audit`: the audit log (moderation actions and role changes), newest first."""

from __future__ import annotations

import argparse
import json

from deployments.cli.common import with_db


def cmd_audit(args: argparse.Namespace) -> int:
    from storage.repositories.audit import AuditStore

    entries = with_db(lambda db: AuditStore(db).page(None, max(1, min(args.limit, 10_000))))
    if args.json:
        rows = [
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "actor_id": str(e.actor_id) if e.actor_id else None,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": str(e.target_id) if e.target_id else None,
                "note": e.note,
                "details": e.details,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not entries:
        print("the audit log is empty")
        return 0
    header = ("ID", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "NOTE")
    table = [header] + [
        (
            str(e.id),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            str(e.actor_id) if e.actor_id else "operator",
            e.action,
            f"{e.target_type} {e.target_id or ''}".strip(),
            (e.note or "")[:60],
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
