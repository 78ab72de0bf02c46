"""ORM schema. Alembic migrations (sample_service/migrations) are the source of truth for the database;
these mappings must agree with them (tests/service/test_migrations.py checks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    """The applicant profile the rules read (credit score, tenure, risk tier)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))
    credit_score: Mapped[int] = mapped_column(Integer)
    risk_tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Record(Base):
    """A user's past transaction; the parent in the parent/children read."""

    __tablename__ = "records"
    __table_args__ = (Index("ix_records_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # lazy="raise" so an accidental lazy load in async code fails loudly instead of hiding an N+1;
    # the n_plus_one scenario asks for per-row loads explicitly.
    items: Mapped[list[RecordItem]] = relationship(
        back_populates="record", lazy="raise", order_by="RecordItem.id"
    )


class RecordItem(Base):
    """Line items of a record; the children in the parent/children read."""

    __tablename__ = "record_items"
    __table_args__ = (Index("ix_record_items_record_id", "record_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    record_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("records.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[float] = mapped_column(Float)

    record: Mapped[Record] = relationship(back_populates="items", lazy="raise")


class Rule(Base):
    """One decision rule; segmented by (country, product) so a request loads only its own segment."""

    __tablename__ = "rules"
    __table_args__ = (Index("ix_rules_segment_priority", "country", "product", "priority"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    product: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    expression: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default="true")


class DecisionEvent(Base):
    """Written in the background by the decision publisher; the response never waits for it."""

    __tablename__ = "decision_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    country: Mapped[str] = mapped_column(String(2))
    product: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rules_evaluated: Mapped[int] = mapped_column(Integer)
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
