"""Backups that restore: `create_backup` writes PostgreSQL (pg_dump), the model store and
the media store into one checked archive; `restore_backup` puts one into a stack and
rebuilds what is derived (docs/operations.md, "Backups and restore").

- `archive`: the tar file, its manifest and checksums.
- `postgres`: pg_dump and pg_restore.
- `create`, `restore`: the two commands' steps.
- `derived`: Redis emptied of Nova's keys, the online features recomputed.
- `deployment`: Nova on Ray, stopped before a restore and deployed again after it.
"""

from deployments.backup.archive import BackupError
from deployments.backup.create import Created, create_backup
from deployments.backup.restore import Restored, restore_backup

__all__ = ["BackupError", "Created", "Restored", "create_backup", "restore_backup"]
