"""Process settings: where the data lives, which configuration to serve, how to listen.

One object, built once from the command line and the environment (`LOCKGATE_*`), so workers
started in other processes see exactly what the parent saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_DATA_DIR = ".lockgate"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    config_path: Path | None = None  # None: the embedded demo configuration
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    redis_url: str | None = None  # LOCKGATE_REDIS_URL: wins over `redis.url` (keeps passwords out of files)
    # Where the store is: None for the SQLite file in the data folder; a postgresql:// URL lets several
    # replicas share one database (lockgate.store.engines).
    database: str | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "lockgate.sqlite3"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.database_path}"

    @property
    def ratelimit_path(self) -> Path:
        return self.data_dir / "ratelimit.sqlite3"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @classmethod
    def from_env(cls, *, data_dir: str | None = None, config: str | None = None, host: str | None = None,
                 port: int | None = None, database_url: str | None = None) -> Settings:
        """Command-line values win over the environment, which wins over the defaults."""
        return cls(
            data_dir=Path(data_dir or os.environ.get("LOCKGATE_DATA_DIR") or DEFAULT_DATA_DIR).resolve(),
            config_path=Path(config).resolve() if config else _env_path("LOCKGATE_CONFIG"),
            host=host or os.environ.get("LOCKGATE_HOST") or DEFAULT_HOST,
            port=port or int(os.environ.get("LOCKGATE_PORT") or DEFAULT_PORT),
            redis_url=os.environ.get("LOCKGATE_REDIS_URL") or None,
            database=database_url or os.environ.get("LOCKGATE_DATABASE_URL") or None,
        )

    def to_env(self) -> dict[str, str]:
        env = {"LOCKGATE_DATA_DIR": str(self.data_dir), "LOCKGATE_HOST": self.host, "LOCKGATE_PORT": str(self.port)}
        if self.config_path is not None:
            env["LOCKGATE_CONFIG"] = str(self.config_path)
        if self.redis_url is not None:
            env["LOCKGATE_REDIS_URL"] = self.redis_url
        if self.database is not None:
            env["LOCKGATE_DATABASE_URL"] = self.database
        return env


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).resolve() if value else None
