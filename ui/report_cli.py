"""``sortloop report --from YYYY-MM-DD --to YYYY-MM-DD --format csv|json|pdf [--out FILE]``.

The same ``build_report`` as the console's Reports tab and /impact, so the numbers agree.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from station.config import StationConfig
    from station.store import Store

DEFAULT_STATION_CONFIG = Path("configs/station.yaml")


class ReportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    PDF = "pdf"


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def _station_config(path: Path | None) -> StationConfig:
    from station.config import load_config

    if path is None and DEFAULT_STATION_CONFIG.is_file():
        path = DEFAULT_STATION_CONFIG
    return load_config(path)


def open_existing_store(cfg: StationConfig) -> Store:
    """The station's store, refusing to create an empty SQLite file where none was recorded yet."""
    from station.store import Store
    from station.store.engine import parse_url, sqlite_file

    path = sqlite_file(parse_url(cfg.store.url))
    if path is not None and str(path) != ":memory:" and not cfg.resolve(str(path)).is_file():
        raise FileNotFoundError(f"no station database at {cfg.resolve(str(path))}; run the station first or "
                                "pass --config with the station's store.url")
    return Store.from_config(cfg)


def report_cmd(
    from_: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, local time of the reports "
                                       "config).")],
    to: Annotated[str, typer.Option("--to", help="Last day, included (YYYY-MM-DD).")],
    fmt: Annotated[ReportFormat, typer.Option("--format", help="csv, json or pdf.")] = ReportFormat.CSV,
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout; for pdf "
                                             "report_<from>_<to>.pdf).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Station config YAML.")] = None,
    reports_config: Annotated[Path | None, typer.Option("--reports-config", help="Shifts, time zone and mass "
                                                        "overrides (default: configs/reports.yaml).")] = None,
) -> None:
    """Throughput, kg, diversion share, hazards and corrections of a period (same numbers as the console)."""
    from station.config import ConfigError
    from station.store import StoreError
    from station.taxonomy import TaxonomyError, load_taxonomy
    from ui.report_export import to_csv, to_pdf
    from ui.reports import DEFAULT_CONFIG, Period, ReportError, build_report, load_report_config

    try:
        cfg = _station_config(config)
        if reports_config is not None and not reports_config.is_file():
            raise ReportError(f"reports config {reports_config} not found; pass an existing YAML file")
        rcfg = load_report_config(reports_config or cfg.resolve(DEFAULT_CONFIG))
        period = Period.parse(from_, to, rcfg.timezone)
        store = open_existing_store(cfg)
        try:
            report = build_report(store, load_taxonomy(cfg.taxonomy_file()), period, rcfg,
                                  station=cfg.station_id)
        finally:
            store.close()
    except (ConfigError, ReportError, StoreError, TaxonomyError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if fmt is ReportFormat.PDF:
        path = out or Path(f"report_{period.start}_{period.end}.pdf")
        path.write_bytes(to_pdf(report))
        typer.echo(f"wrote {path}", err=True)
        return
    text = to_csv(report) if fmt is ReportFormat.CSV else report.to_json() + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)


def register_report_command(app: typer.Typer) -> None:
    """Add ``report`` to the ``sortloop`` command."""
    app.command("report")(report_cmd)
