"""Access and security: server-side sessions (hashed tokens), service tokens, an audit log, failed-login
counts and locks on users; the session signing key that 0002 kept in the database is deleted (sessions are
random tokens checked against their hash now, so nothing in the database can forge a cookie).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", recreate="auto") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_sessions"),
        sa.ForeignKeyConstraint(["username"], ["users.username"], name="fk_sessions_username_users",
                                ondelete="CASCADE"),
    )
    op.create_index("ix_sessions_username", "sessions", ["username"])
    op.create_table(
        "service_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=True),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_service_tokens"),
        sa.UniqueConstraint("name", name="uq_service_tokens_name"),
        sa.UniqueConstraint("token_hash", name="uq_service_tokens_token_hash"),
        sa.CheckConstraint("scope IN ('metrics', 'read', 'ack')", name="ck_service_tokens_scope"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.execute("DELETE FROM console_secrets WHERE name = 'session_key'")


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("service_tokens")
    op.drop_index("ix_sessions_username", "sessions")
    op.drop_table("sessions")
    with op.batch_alter_table("users", recreate="auto") as batch:
        batch.drop_column("locked")
        batch.drop_column("failed_logins")
