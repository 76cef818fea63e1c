"""PostgreSQL 16 from the ``pgserver`` wheel, listening on a loopback TCP port.

pgserver alone serves a Unix socket for one process tree; we reuse its binaries and its
root-safe set-up (a ``pgserver`` system user owns the data) but start the server ourselves so
that separate processes share it over TCP.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import psycopg

from connectors.settings import Settings
from devstack.process import ServiceError


class LocalPostgres:
    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / "postgres"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"

    @property
    def url(self) -> str:
        return self.settings.local_database_url

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")  # postgres refuses to run as root
        return "pgserver"

    def install(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        from pgserver import _commands
        from pgserver.utils import ensure_prefix_permissions

        self.data.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is not None:
            import pwd

            from pgserver._commands import POSTGRES_BIN_PATH

            ensure_prefix_permissions(self.data)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            entry = pwd.getpwnam(user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        _pg(_commands, "initdb")(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, user=user
        )

    def start(self) -> None:
        if self.ready():
            return
        from pgserver import _commands

        # TCP only: a Unix socket inside the data directory breaks when the checkout's path is
        # longer than the 107 bytes a socket path may have. The ledger projector writes ~2 KB of
        # WAL per event; with the default max_wal_size (1 GB) a checkpoint came every ~30 s of
        # projection, each followed by a burst of full-page images. 4 GB and 15 min space them.
        options = (
            f"-h 127.0.0.1 -p {self.settings.postgres_port} -c unix_socket_directories='' "
            "-c max_connections=200 -c shared_buffers=256MB -c synchronous_commit=on "
            "-c max_wal_size=4GB -c checkpoint_timeout=15min"
        )
        try:
            _pg(_commands, "pg_ctl")(
                ["-w", "-o", options, "-l", str(self.log), "start"],
                pgdata=self.data,
                user=self._user(),
                timeout=60,
            )
        except Exception as exc:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ServiceError(f"PostgreSQL did not start: {exc}\n{tail}") from exc

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server: ``fast`` (roll back open transactions, checkpoint) or ``immediate``
        (no checkpoint: the next start recovers from the WAL, as after a crash)."""
        if not (self.data / "postmaster.pid").exists():
            return False
        from pgserver import _commands

        try:
            _pg(_commands, "pg_ctl")(
                ["-w", "-m", mode, "stop"], pgdata=self.data, user=self._user(), timeout=60
            )
        except Exception:
            return False
        return True

    def logs(self) -> Path:
        return self.log


def _pg(commands: Any, name: str) -> Callable[..., str]:
    """pgserver builds its command wrappers at import time, invisible to type checkers."""
    return cast(Callable[..., str], getattr(commands, name))
