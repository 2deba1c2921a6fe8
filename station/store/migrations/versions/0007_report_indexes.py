"""Indexes for reports and /impact: ``items`` by station and decision time, carrying the columns the reports
group by (an index-only scan), and ``alarms.item_id`` (a hazard's acknowledged alarm, found without a scan).
Measured with ``bench/reports.py`` (docs/reports.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_report", "items",
                    ["station_id", "decided_at", "run_id", "stream", "class_name", "hazard"])
    op.create_index(op.f("ix_alarms_item_id"), "alarms", ["item_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_alarms_item_id"), table_name="alarms")
    op.drop_index("ix_items_report", table_name="items")
