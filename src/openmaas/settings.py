"""The one configuration object; built in the entry point and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENMAAS_", extra="ignore")

    data_dir: Path = Field(default=Path(".openmaas"))
    """Where the SQLite database and the artifact store live."""

    database_url: str = ""
    """SQLAlchemy async URL; empty means a SQLite file in the data directory."""

    host: str = "127.0.0.1"
    """Interface the server binds."""

    port: int = 8000
    """Port the server binds."""

    max_artifact_bytes: int = 512 * 1024 * 1024
    """Largest artifact an upload may carry; larger uploads get 413."""

    max_request_bytes: int = 8 * 1024 * 1024
    """Largest body any other request may carry; larger bodies get 413."""

    admin_key: SecretStr | None = None
    """When set, a bearer credential with full admin rights (automation and tests)."""

    model_cache_bytes: int = 4 * 1024**3
    """Memory budget of loaded models; least recently used ones are evicted past it."""

    sync_interval_s: float = 1.0
    """How often each worker picks up deployments and changes made by other workers."""

    log_level: str = "info"
    """Log level of the server and of OpenMaaS' own loggers."""

    demo: bool = False
    """Train, register and deploy the demo models and accounts on first start."""

    migrate_on_start: bool = True
    """Apply database migrations when the application starts."""

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'openmaas.db'}"
        return self

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir.resolve() / "artifacts"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
