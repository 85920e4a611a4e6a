"""The one configuration object; built in the entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A shorter admin key could be guessed by a patient attacker; 32 characters of a random
# hex string are 128 bits.
MIN_ADMIN_KEY_CHARS = 32


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

    max_prompt_characters: int | None = Field(default=None, ge=1)
    """Longest prompt (all the texts of a request together) a language model reads, in
    characters; longer ones get 413 before any tokenizer runs. Unset: 16 times the
    prompt token limit (below), else 16 times the model's context length. A deployment
    may set its own (``max_prompt_characters``)."""

    max_prompt_tokens: int | None = Field(default=None, ge=1)
    """Most prompt tokens a language model reads; more get 400 (``context_length_exceeded``)
    before the model runs. Unset: the model's context length. A deployment may set its own."""

    max_tensor_rows: int = Field(default=100_000, ge=1)
    """Most rows one tensor request (``/predict``, V2, KServe V1) may carry; more get 413
    before the model runs. A deployment may set its own (``max_rows``)."""

    admin_key: SecretStr | None = None
    """When set, a bearer credential with full admin rights (automation and tests)."""

    model_cache_bytes: int = 4 * 1024**3
    """Memory budget of loaded models; least recently used ones are evicted past it."""

    sync_interval_s: float = 1.0
    """How often each worker picks up deployments and changes made by other workers."""

    log_level: str = "info"
    """Log level of the server and of OpenMaaS' own loggers."""

    access_log: bool = False
    """Log every HTTP request (uvicorn's access log); off by default, as it costs a log
    line per inference request on the hot path."""

    metrics_dir: Path | None = None
    """Directory where worker processes pool their Prometheus metrics, so ``/metrics``
    counts every worker's requests; ``openmaas serve --workers N`` sets it, together with
    prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``. Unset: each process reports its own."""

    demo: bool = False
    """Train, register and deploy the demo models and accounts on first start."""

    migrate_on_start: bool = True
    """Apply database migrations when the application starts."""

    redis_url: str | None = None
    """Redis URL (redis://host:6379/0); when set, rate limits are counted there, so every
    worker and replica shares one exact limit. Unset: counted in each process's memory."""

    redis_prefix: str = "openmaas"
    """Prefix of every Redis key OpenMaaS writes; lets several platforms share one Redis."""

    reservation_ttl_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How long a token reservation holds budget without news from its request: requests
    still running renew it every half of this, so only the hold of a worker or replica
    that died mid-request lingers, for at most this long."""

    signup: Literal["open", "approval", "closed"] = "open"
    """Self sign-up: open, open but each new account waits for an admin, or closed."""

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    """ISO 4217 code of every price and amount; amounts round half-even, per line, to
    its minor unit (two decimals, none for JPY, three for KWD...). See docs/billing.md."""

    invoice_check_seconds: float = Field(default=300.0, gt=0)
    """How often each worker checks whether last month is closed, and closes it if not
    (the database elects one worker across replicas); see docs/billing.md."""

    default_plan: str = "free"
    """Plan of a new application when its developer names none."""

    session_secret: SecretStr | None = None
    """Key that signs session cookies; unset: a random one kept in the data directory
    (set it when replicas do not share a data directory)."""

    session_max_age: int = 14 * 24 * 3600
    """Seconds a login session lasts."""

    secure_cookies: bool = False
    """Mark every cookie Secure (only sent over HTTPS); turn on behind TLS. Without it,
    cookies are still Secure on requests that came over HTTPS (directly, or as a trusted
    proxy's ``X-Forwarded-Proto: https`` says)."""

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Addresses (or CIDR networks, or "*") of the reverse proxies whose ``X-Forwarded-Proto``
    and ``X-Forwarded-For`` are believed, comma separated; unset: nobody's."""

    metrics_public: bool = False
    """Serve ``/metrics`` to anyone; off (the default), a scrape needs the admin key."""

    max_header_bytes: int = Field(default=64 * 1024, ge=4096, le=16 * 1024 * 1024)
    """Largest request line and headers a client may send (``openmaas serve``); past it the
    connection is refused with 431/400 before anything is parsed further."""

    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=3600)
    """How long an idle keep-alive connection stays open (``openmaas serve``)."""

    log_format: Literal["text", "json"] = "text"
    """Log lines as text with a UTC timestamp, or one JSON object a line."""

    access_refresh_seconds: float = 0.5
    """How often each worker checks for changes to keys, applications, plans and users;
    a revoked key stops working everywhere within about this long."""

    usage_flush_seconds: float = 5.0
    """How often aggregated usage (and keys' last-used times) are written to the database;
    a crash loses at most this much metering."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed to call the API from a browser, comma separated ("*" for any)."""

    oidc_issuer: str | None = None
    """OpenID Connect issuer URL for single sign-on; unset disables single sign-on."""

    oidc_client_id: str | None = None
    """Client id registered at the OpenID Connect provider."""

    oidc_client_secret: SecretStr | None = None
    """Client secret registered at the OpenID Connect provider."""

    oidc_scopes: str = "openid email profile"
    """Scopes asked of the OpenID Connect provider."""

    artifact_url: str = ""
    """Where model artifacts are stored: a local folder (a path or ``file://`` URL) or an
    S3-compatible bucket (``s3://bucket/prefix``). Empty: the ``artifacts`` folder of the
    data directory. Replicas that do not share a disk need a bucket."""

    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible server (MinIO, Ceph, ...); unset: ``AWS_ENDPOINT_URL``,
    else Amazon S3. An ``http://`` endpoint is allowed (no TLS)."""

    s3_region: str | None = None
    """Region of the bucket; unset: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``."""

    s3_access_key_id: str | None = None
    """Access key of the bucket; unset: ``AWS_ACCESS_KEY_ID`` or the other usual AWS
    credential sources (web identity, instance profile)."""

    s3_secret_access_key: SecretStr | None = None
    """Secret key of the bucket; unset: ``AWS_SECRET_ACCESS_KEY``."""

    artifact_store_timeout_seconds: float = 30.0
    """Longest an artifact store request may go without progress before it fails (and the
    model load that needed it answers 503)."""

    artifact_cache_bytes: int = 20 * 1024**3
    """Disk budget of this replica's cache of artifacts downloaded from a bucket; the least
    recently used are deleted past it (and downloaded again when next loaded)."""

    database_connect_timeout_seconds: float = 5.0
    """Longest wait to open a database connection (or to get one from the pool); past it
    the request answers 503 with Retry-After."""

    database_statement_timeout_seconds: float = 15.0
    """Longest a database statement may run (PostgreSQL); past it the request answers 503."""

    startup_wait_seconds: float = 30.0
    """How long a starting process waits for the database to answer (and, when it does not
    migrate itself, for the schema to reach the newest revision) before it gives up."""

    limits_fail_open: bool = False
    """With Redis unreachable: admit requests without counting them against their plan's
    limits (true), or answer 503 to keys whose plan has limits (false, the default)."""

    shutdown_delay_seconds: float = 0.0
    """On SIGTERM, how long the process keeps serving while readiness already answers 503,
    so that load balancers stop sending it traffic before it stops accepting."""

    shutdown_grace_seconds: float = 30.0
    """On stop, how long in-flight requests (streams included) may take to finish; those
    still running after it are cut."""

    login_max_failures: int = Field(default=10, ge=1)
    """Failed logins one account may have in ``login_failure_window_seconds`` before its
    logins answer 429 (with Retry-After) until the window ends."""

    login_max_failures_per_address: int = Field(default=50, ge=1)
    """Failed logins one client address may have in the window, whichever accounts they
    named, before its logins answer 429."""

    login_failure_window_seconds: float = Field(default=900.0, gt=0)
    """Length of the window in which failed logins are counted."""

    password_hashing_concurrency: int = Field(default=2, ge=1)
    """Password hashes (argon2, 64 MiB each) computed at once; more wait their turn, so a
    burst of logins cannot take the server's memory."""

    max_keys_per_developer: int = Field(default=100, ge=1)
    """Keys (personal and of applications) one developer may hold; past it, 409."""

    max_applications_per_developer: int = Field(default=50, ge=1)
    """Applications one developer may own; past it, 409."""

    usage_memory_buckets: int = Field(default=50_000, ge=1)
    """Usage buckets (one per minute, key, model, version and status) held in memory while
    the database cannot be written; past it they are spilled to a file in the data
    directory and written when the database answers again."""

    usage_spill_bytes: int = Field(default=256 * 1024**2, ge=0)
    """Largest size of the usage spill files; usage that does not fit is dropped and
    counted in ``openmaas_usage_dropped_requests_total``."""

    otel_endpoint: str | None = None
    """OpenTelemetry collector (OTLP over HTTP, e.g. http://collector:4318) to send a trace
    of every inference request to; unset: no tracing, at no cost. The exporter also reads
    the standard OTEL_EXPORTER_OTLP_* variables (headers, certificates, timeout)."""

    otel_service_name: str = "openmaas"
    """``service.name`` of the traces."""

    ray_address: str | None = None
    """The Ray cluster that deployments with ``"engine": "ray"`` are placed on
    (``127.0.0.1:6379``, ``auto``, ``ray://head:10001``); unset: only ``local``. Needs the
    ``ray`` extra, the same Ray version as the cluster, and OpenMaaS installed on its
    workers."""

    ray_app_prefix: str = "openmaas-"
    """Ray Serve application names are this prefix and the endpoint name, so that several
    OpenMaaS installations can share a cluster."""

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"OPENMAAS_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters "
                "(e.g. openssl rand -hex 32)"
            )
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'openmaas.db'}"
        return self

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir.resolve() / "artifacts"

    def s3_options(self) -> dict[str, Any]:
        """What the bucket store takes from these settings (unset ones: AWS_* defaults)."""
        secret = self.s3_secret_access_key
        return {
            "endpoint_url": self.s3_endpoint_url,
            "region": self.s3_region,
            "access_key_id": self.s3_access_key_id,
            "secret_access_key": secret.get_secret_value() if secret else None,
            "timeout_s": self.artifact_store_timeout_seconds,
        }

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``overrides``); a wrong value stops the process
    with one line per problem, not a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise SystemExit(f"OpenMaaS cannot start: {problems}") from None


def _problem(error: Any) -> str:
    field = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if message.startswith("OPENMAAS_"):
        return message
    return f"OPENMAAS_{field.upper()}: {message}"
