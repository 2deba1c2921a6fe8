"""The audit log for admins: ``GET /api/console/audit`` (JSON) and ``/api/console/audit.csv`` (download), and
the CSV the ``sortloop audit --csv`` command writes. Entries are written by ``station.store.access``."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict

from station.store.access import AuditRecord
from ui.auth import ConsoleUser, Perm
from ui.settings import Console

Limit = Annotated[int, Query(ge=1, le=10_000, description="Newest entries (1–10000).")]
FIELDS = ("at", "actor", "action", "target", "detail", "address")


class AuditOut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float
    actor: str
    action: str
    target: str
    detail: str
    address: str


def audit_csv(rows: Sequence[AuditRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("time_utc", *FIELDS))
    for a in rows:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.at))
        writer.writerow((stamp, a.at, a.actor, a.action, a.target, a.detail, a.address))
    return out.getvalue()


def router(console: Console) -> APIRouter:
    r = APIRouter(tags=["console"])
    admin = Depends(console.auth.dependency(Perm.USERS))

    @r.get("/api/console/audit", response_model=list[AuditOut])
    def audit(user: ConsoleUser = admin, limit: Limit = 500, action: str | None = None) -> list[AuditOut]:
        """The audit log, newest first (admins)."""
        rows = console.repo.access.audit_log(limit, action)
        return [AuditOut(at=a.at, actor=a.actor, action=a.action, target=a.target, detail=a.detail,
                         address=a.address) for a in rows]

    @r.get("/api/console/audit.csv", response_class=Response)
    def audit_download(user: ConsoleUser = admin, limit: Limit = 10_000) -> Response:
        name = f"audit-log-{time.strftime('%Y%m%d')}.csv"
        return Response(audit_csv(console.repo.access.audit_log(limit)), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    return r
