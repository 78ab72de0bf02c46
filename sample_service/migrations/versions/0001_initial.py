"""Initial schema: users, records (+ items), segmented rules, decision events.

The composite indexes are the hot filters: rules by (country, product) in priority order, and a
user's records in id order (keyset pagination walks that index).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("credit_score", sa.Integer, nullable=False),
        sa.Column("risk_tier", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_records_user_id_id", "records", ["user_id", "id"])
    op.create_table(
        "record_items",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("record_id", sa.BigInteger, sa.ForeignKey("records.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("sku", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.Float, nullable=False),
    )
    op.create_index("ix_record_items_record_id", "record_items", ["record_id"])
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("expression", sa.Text, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, server_default=sa.true(), nullable=False),
    )
    op.create_index("ix_rules_segment_priority", "rules", ["country", "product", "priority"])
    op.create_table(
        "decision_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.Integer, nullable=True),
        sa.Column("rules_evaluated", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("decision_events")
    op.drop_index("ix_rules_segment_priority", table_name="rules")
    op.drop_table("rules")
    op.drop_index("ix_record_items_record_id", table_name="record_items")
    op.drop_table("record_items")
    op.drop_index("ix_records_user_id_id", table_name="records")
    op.drop_table("records")
    op.drop_table("users")
