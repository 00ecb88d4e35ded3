"""The embedded PostgreSQL: initdb and pg_ctl as the `postgres` user, password auth on
127.0.0.1, its data under the state dir, 0700 and 0600 for that user.

With the stack's TLS on (`Layout.tls`) it accepts TCP connections only over TLS, from
clients that present a certificate of the stack's CA as well as the password; its URL asks
for `sslmode=verify-full`.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from urllib.parse import quote, urlencode

from deployments.stack.certs import ensure_local, stack_tls_dir
from deployments.stack.debian import postgres_bin_dir
from deployments.stack.layout import Layout
from deployments.stack.processes import (
    LOCALHOST,
    StackError,
    port_open,
    private_dir,
    run,
    secret,
)

# With TLS: the socket on disk as before; TCP only over TLS, with a certificate of the
# stack's CA (`verify-ca`: its name need not be the user's) and the password.
_TLS_HBA = """local all all scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca
hostssl all all ::1/128 scram-sha-256 clientcert=verify-ca
"""


class Postgres:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.data = layout.path("postgres", "data")
        self.run_dir = layout.path("postgres", "run")
        self.log_file = layout.path("logs", "postgres.log")
        self.password_file = layout.path("secrets", "pg_password")
        # Its copies of the stack's certificate and key: PostgreSQL's user must own them.
        self.tls_dir = layout.path("postgres", "tls")
        self.certs = stack_tls_dir(layout)

    @property
    def url(self) -> str:
        password = quote(secret(self.password_file), safe="")
        url = f"postgresql://nova:{password}@{LOCALHOST}:{self.layout.pg_port}/nova"
        return f"{url}?{urlencode(self.client_tls())}" if self.layout.tls else url

    def client_tls(self) -> dict[str, str]:
        """How a client checks this server and proves itself (libpq's names, which asyncpg
        reads in a URL too)."""
        node = self.certs.node()
        return {
            "sslmode": "verify-full",
            "sslrootcert": str(self.certs.ca_cert),
            "sslcert": str(node.cert),
            "sslkey": str(node.key),
        }

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # initdb and pg_ctl refuse to run as root.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _bin(self, name: str) -> str:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL is not installed (Debian package `postgresql`)")
        return str(bin_dir / name)

    def _prepare_dirs(self) -> None:
        # Its directories are its user's alone (PostgreSQL makes its data dir 0700 itself).
        # As root, that user is `postgres`, which reaches them through the state dir and
        # the logs dir: those let its group pass through (`Stack`), not list or read.
        for directory in (self.data.parent, self.run_dir):
            private_dir(directory)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        self.log_file.chmod(0o600)
        self._own(self.data.parent, self.run_dir, self.log_file)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists() and port_open(self.layout.pg_port)

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        if self.running():
            return
        options = (
            f"-c listen_addresses={LOCALHOST} -p {self.layout.pg_port} "
            f"-k {self.run_dir} -c max_connections=300 -c shared_buffers=256MB"
        )
        if self.layout.tls:
            options += self._tls_options()
        run(
            self._as_owner(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ]
            ),
            what="PostgreSQL start",
            log_file=self.log_file,
        )
        self._ensure_database()

    def _tls_options(self) -> str:
        """Server options for TLS, after copying the stack's certificate, key and CA where
        PostgreSQL's user owns them (it refuses a key that another user could read)."""
        node = ensure_local(self.certs)
        private_dir(self.tls_dir)
        copies = {
            "server.crt": node.cert,
            "server.key": node.key,
            "ca.crt": self.certs.ca_cert,
            "pg_hba.conf": None,
        }
        for name, source in copies.items():
            target = self.tls_dir / name
            if source is None:
                target.write_text(_TLS_HBA)
            else:
                shutil.copyfile(source, target)
            target.chmod(0o600)
        self._own(self.tls_dir, *(self.tls_dir / name for name in copies))
        return (
            f" -c ssl=on -c ssl_cert_file={self.tls_dir / 'server.crt'}"
            f" -c ssl_key_file={self.tls_dir / 'server.key'}"
            f" -c ssl_ca_file={self.tls_dir / 'ca.crt'}"
            f" -c hba_file={self.tls_dir / 'pg_hba.conf'}"
        )

    @staticmethod
    def _own(*paths: Path) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in paths:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def _ensure_database(self) -> None:
        env = {**os.environ, "PGPASSWORD": secret(self.password_file)}
        if self.layout.tls:
            env.update({f"PG{name.upper()}": value for name, value in self.client_tls().items()})
        connect = ["-h", LOCALHOST, "-p", str(self.layout.pg_port), "-U", "nova"]
        exists = run(
            [
                self._bin("psql"),
                *connect,
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1 FROM pg_database WHERE datname = 'nova'",
            ],
            what="psql",
            env=env,
        )
        if exists.strip() != "1":
            run([self._bin("createdb"), *connect, "nova"], what="createdb", env=env)

    def _initdb(self) -> None:
        password = secret(self.password_file)
        pwfile = self.run_dir / ".initdb-pw"
        pwfile.write_text(password)
        try:
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            pwfile.chmod(0o600)
            run(
                self._as_owner(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "nova",
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run(
                self._as_owner(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        "60",
                        "stop",
                    ]
                ),
                what="PostgreSQL stop",
                log_file=self.log_file,
            )
