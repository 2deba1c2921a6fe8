"""Runs: a table of the station's runs (live, scored simulator runs, benchmarks) and ``items.run_id``, so reports
read a station's live runs only. Items recorded before keep ``run_id`` NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.CheckConstraint("kind IN ('live', 'scorecard', 'bench')", name=op.f("ck_runs_kind")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_station_id"), "runs", ["station_id"])
    op.create_index(op.f("ix_runs_kind"), "runs", ["kind"])
    with op.batch_alter_table("items", recreate="auto") as batch:
        batch.add_column(sa.Column("run_id", sa.String(64), nullable=True))
        batch.create_foreign_key(op.f("fk_items_run_id_runs"), "runs", ["run_id"], ["run_id"])
        batch.create_index(op.f("ix_items_run_id"), ["run_id"])


def downgrade() -> None:
    with op.batch_alter_table("items", recreate="auto") as batch:
        batch.drop_index(op.f("ix_items_run_id"))
        batch.drop_constraint(op.f("fk_items_run_id_runs"), type_="foreignkey")
        batch.drop_column("run_id")
    op.drop_index(op.f("ix_runs_kind"), table_name="runs")
    op.drop_index(op.f("ix_runs_station_id"), table_name="runs")
    op.drop_table("runs")
