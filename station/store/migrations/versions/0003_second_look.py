"""Items gain the crop classifier's evidence (its class probabilities on the crop and its version); model
versions gain a kind ('detector' or 'classifier'), one active of each.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items", recreate="auto") as batch:
        batch.add_column(sa.Column("crop_scores", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("classifier_version", sa.String(128), nullable=True))
    with op.batch_alter_table("model_versions", recreate="auto") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="detector"))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", recreate="auto") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("items", recreate="auto") as batch:
        batch.drop_column("classifier_version")
        batch.drop_column("crop_scores")
