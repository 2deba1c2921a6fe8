"""Initial schema: items, actuations, alarms, model versions, and the console's users, corrections and
quarantine log.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = "status IN ('pending', 'sending', 'sent', 'failed', 'missed')"
ROLES = "role IN ('operator', 'engineer', 'manager', 'admin')"
KINDS = "kind IN ('reclass', 'not_item', 'missed_item')"


def _index(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, [column])


def _items() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("frame_index", sa.BigInteger(), nullable=False),
        sa.Column("crossed_at", sa.Float(), nullable=False),
        sa.Column("crossed_ticks", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=True),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("hazard", sa.String(32), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("votes", sa.JSON(), nullable=False),
        sa.Column("observations", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("crop_path", sa.String(512), nullable=True),
        sa.Column("bin", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_items"),
    )
    _index("items", "station_id", "decided_at", "class_name", "stream", "hazard", "reason")


def _actuations() -> None:
    op.create_table(
        "actuations",
        sa.Column("actuation_id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("bin", sa.String(64), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("fire_at", sa.Float(), nullable=False),
        sa.Column("fire_at_ticks", sa.BigInteger(), nullable=True),
        sa.Column("fire_at_wall", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.CheckConstraint(STATUSES, name="ck_actuations_status"),
        sa.ForeignKeyConstraint(["item_id"], ["items.item_id"], name="fk_actuations_item_id_items"),
        sa.PrimaryKeyConstraint("actuation_id", name="pk_actuations"),
    )
    _index("actuations", "item_id", "status")


def _alarms_and_models() -> None:
    op.create_table(
        "alarms",
        sa.Column("alarm_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=True),
        sa.Column("raised_at", sa.Float(), nullable=False),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("alarm_id", name="pk_alarms"),
    )
    _index("alarms", "kind", "raised_at", "acknowledged_at")
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("loaded_at", sa.Float(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_model_versions"),
    )


def _console() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint(ROLES, name="ck_users_role"),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )
    op.create_table(
        "corrections",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("before_class", sa.String(64), nullable=True),
        sa.Column("after_class", sa.String(64), nullable=True),
        sa.Column("box", sa.JSON(), nullable=True),
        sa.Column("frame_path", sa.String(512), nullable=True),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.CheckConstraint(KINDS, name="ck_corrections_kind"),
        sa.ForeignKeyConstraint(["item_id"], ["items.item_id"], name="fk_corrections_item_id_items"),
        sa.PrimaryKeyConstraint("id", name="pk_corrections"),
    )
    _index("corrections", "item_id", "created_at")
    op.create_table(
        "quarantine_log",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("hazard_type", sa.String(32), nullable=False),
        sa.Column("container", sa.String(64), nullable=False),
        sa.Column("handled_by", sa.String(64), nullable=False),
        sa.Column("handled_at", sa.Float(), nullable=False),
        sa.Column("checklist", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.item_id"], name="fk_quarantine_log_item_id_items"),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine_log"),
    )
    _index("quarantine_log", "item_id")


def upgrade() -> None:
    _items()
    _actuations()
    _alarms_and_models()
    _console()


def downgrade() -> None:
    for table in ("quarantine_log", "corrections", "users", "model_versions", "alarms", "actuations", "items"):
        op.drop_table(table)
