"""Console: corrections gain the author's role, a ``confirm`` kind and a nullable item (missed items);
a table of console secrets (the session signing key).

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KINDS = "kind IN ('reclass', 'not_item', 'missed_item', 'confirm')"
# 0001 created the kind check under the naming convention twice over; 0002 gives it the models' name.
OLD_CHECK, CHECK = "ck_corrections_ck_corrections_kind", "ck_corrections_kind"
OLD_KINDS = "kind IN ('reclass', 'not_item', 'missed_item')"


def upgrade() -> None:
    # SQLite alters a table by copying it (batch mode); PostgreSQL alters in place.
    with op.batch_alter_table("corrections", recreate="auto") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=True))
        batch.alter_column("item_id", existing_type=sa.String(32), nullable=True)
        batch.drop_constraint(op.f(OLD_CHECK), type_="check")
        batch.create_check_constraint(op.f(CHECK), sa.text(KINDS))
        batch.create_index("ix_corrections_username", ["username"])
    op.create_table(
        "console_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_console_secrets"),
    )


def downgrade() -> None:
    op.drop_table("console_secrets")
    op.execute("DELETE FROM corrections WHERE kind = 'confirm' OR item_id IS NULL")
    with op.batch_alter_table("corrections", recreate="auto") as batch:
        batch.drop_index("ix_corrections_username")
        batch.drop_constraint(op.f(CHECK), type_="check")
        batch.create_check_constraint(op.f(OLD_CHECK), sa.text(OLD_KINDS))
        batch.alter_column("item_id", existing_type=sa.String(32), nullable=False)
        batch.drop_column("role")
