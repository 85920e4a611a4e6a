"""SQLAlchemy tables; the only schema definition (migrations mirror it)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import true as sql_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class ExactDecimal(TypeDecorator[Decimal]):
    """Exact decimals on every backend: NUMERIC on PostgreSQL, text on SQLite.

    SQLite has no exact decimal type (its NUMERIC affinity turns 0.1 into a float), so
    there the digits are kept as text; money is always added up in Python, never by SUM.
    """

    impl = Numeric(28, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(28, 12, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        value = value if isinstance(value, Decimal) else Decimal(str(value))
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        result = value if isinstance(value, Decimal) else Decimal(str(value))
        return result.normalize() if result else Decimal(0)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    task: Mapped[str] = mapped_column(String(64), default="other")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[ModelVersionRow]] = relationship(
        back_populates="model", cascade="all, delete-orphan", passive_deletes=True
    )
    aliases: Mapped[list[ModelAliasRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(64))
    artifact_filename: Mapped[str] = mapped_column(String(255))
    artifact_path: Mapped[str] = mapped_column(String(1024))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    allow_code: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[ModelRow] = relationship(back_populates="versions")


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_name: Mapped[str] = mapped_column(String(128), index=True)
    model_name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(32), default="deploying")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)
    undeployed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str] = mapped_column(String(32), default="developer")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # False while a sign-up waits for an admin (when sign-up needs approval).
    approved: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sql_true())
    # "<issuer>|<sub>" of the single sign-on identity linked to this user.
    oidc_subject: Mapped[str | None] = mapped_column(String(512), nullable=True, unique=True)
    # Sessions issued before this instant are void (a password change logs out elsewhere).
    password_changed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # What the name looks like (domain/usernames.py): a look-alike of a taken name is refused.
    username_skeleton: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    # Sessions issued before this instant are void too (logging out ends them everywhere).
    sessions_ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Set when an admin deletes the account: it is disabled for good, its history kept.
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None for a user's personal key (management API); set for an application's key.
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class PlanRow(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    models: Mapped[list[str]] = mapped_column(JSON, default=lambda: ["*"])
    requests_per_second: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests_per_hour: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests_per_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    monthly_token_quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tokens_per_hour: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    input_tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    input_tokens_per_hour: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    input_tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output_tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output_tokens_per_hour: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    output_tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Ordered per-model rules: [{"models": [...], "name"?, limits and prices it replaces}].
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    price_per_1k_input_tokens: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    price_per_1k_output_tokens: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    price_per_request: Mapped[Decimal] = mapped_column(ExactDecimal(), default=Decimal(0))
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApplicationRow(Base):
    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Set when its owner deletes it (status "archived"): keys revoked, history kept.
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)


class UsageRow(Base):
    """Usage aggregated per minute; one flush writes one row per (minute, who, what, status).

    Several rows may share a minute (several flushes or workers): readers always sum.
    ``day`` and ``month`` are the minute's UTC day and "YYYY-MM", kept so every backend
    groups by them the same way.
    """

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_day_application", "day", "application_id"),
        Index("ix_usage_month_user", "month", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    minute: Mapped[datetime] = mapped_column()
    day: Mapped[date] = mapped_column(Date)
    month: Mapped[str] = mapped_column(String(7))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    application_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    protocol: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    requests: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_ms_sum: Mapped[float] = mapped_column(Float)
    latency_ms_max: Mapped[float] = mapped_column(Float)
    # The terms in force when the requests ran: which plan and rule, at which unit
    # prices. A plan changed later, or an application moved to another plan, leaves
    # these as they were. None: no plan applied (an admin key), nothing is billed.
    plan_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    plan: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rule: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    price_per_request: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    price_per_1k_input_tokens: Mapped[Decimal | None] = mapped_column(ExactDecimal(), nullable=True)
    price_per_1k_output_tokens: Mapped[Decimal | None] = mapped_column(
        ExactDecimal(), nullable=True
    )
    # The month whose closing put this row on an invoice; None: not invoiced yet. A row
    # of a month already closed (written late) goes onto the next close, as an adjustment.
    billed_month: Mapped[str | None] = mapped_column(String(7), nullable=True, index=True)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccessVersionRow(Base):
    """One row whose counter grows on every change that the access snapshot mirrors.

    Every worker polls it (one indexed read) and reloads its snapshot when it moved.
    """

    __tablename__ = "access_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class ServingVersionRow(Base):
    """One row whose counter grows on every change to deployments and model aliases.

    Every worker's deployment sync reads it and reloads its endpoint table when it moved
    (a count or a sum of rows misses changes that cancel out, such as two aliases swapped).
    """

    __tablename__ = "serving_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class ModelRouteRow(Base):
    """A ModelRoute: its document, and the state of its canary shared by every worker.

    ``revision`` grows on every change (a new spec, a canary step); workers reload a route
    when it moved, and count canary outcomes against the revision they serve, so counts
    of a window that has closed never land in the next one.
    """

    __tablename__ = "model_routes"
    # Names are unique within a namespace (two namespaces may each have "test").
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_model_routes_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    namespace: Mapped[str] = mapped_column(String(128), default="default")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(BigInteger, default=1)
    canary_weight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    canary_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    window_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    window_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    window_failures: Mapped[int] = mapped_column(BigInteger, default=0)
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonthCloseRow(Base):
    """One row per closed month: inserting it elects the one worker that closes it."""

    __tablename__ = "billing_closes"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(128))


class InvoiceRow(Base):
    """A closed month's bill of one account; never changes (database triggers refuse it).

    ``user_id`` is a plain number, not a foreign key, and the username is copied: an
    invoice outlives the account it bills, even a purged one.
    """

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("user_id", "month", name="uq_invoices_user_month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(128))
    month: Mapped[str] = mapped_column(String(7), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(ExactDecimal())
    total: Mapped[Decimal] = mapped_column(ExactDecimal())
    closed_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[InvoiceLineRow]] = relationship(
        order_by="InvoiceLineRow.position", lazy="selectin"
    )


class InvoiceLineRow(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "usage" | "adjustment"
    usage_month: Mapped[str] = mapped_column(String(7))
    application_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    application: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    plan: Mapped[str] = mapped_column(String(64))
    rule: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    requests: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    price_per_request: Mapped[Decimal] = mapped_column(ExactDecimal())
    price_per_1k_input_tokens: Mapped[Decimal] = mapped_column(ExactDecimal())
    price_per_1k_output_tokens: Mapped[Decimal] = mapped_column(ExactDecimal())
    amount: Mapped[Decimal] = mapped_column(ExactDecimal())
