"""Data exports: one person's data as a zip archive, made by a Ray task away from the
gateway.

- `archive`: what goes in the archive (JSON per kind, media files, README.txt) and how it
  is written in bounded memory.
- `tasks`: the Ray task that makes one export's archive and stores it in the media store.
- `worker`: the job that leases exports from PostgreSQL, runs the task, and expires
  archives past their lifetime.
"""
