"""Reports configuration (``configs/reports.yaml``, every key optional): time zone, shifts, mass overrides and
which streams count as diverted from residual."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.taxonomy import Stream, Taxonomy

DEFAULT_CONFIG = "configs/reports.yaml"
DIVERTED = [Stream.ELECTRONICS, Stream.PLASTIC, Stream.METAL, Stream.TEXTILE]


class ReportError(ValueError):
    """A report cannot be made as asked (bad period, bad config); the message names the input and the fix."""


def hour_of(value: str) -> int:
    hh, _, mm = value.partition(":")
    if not (hh.isdigit() and mm == "00" and 0 <= int(hh) <= 23):
        raise ValueError(f"{value!r}: write a whole local hour as HH:00 (00:00 … 23:00)")
    return int(hh)


class ShiftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Shift name shown in reports, e.g. early.")
    start: str = Field(description="Local start time, on the hour (HH:00).")
    end: str = Field(description="Local end time, on the hour (HH:00); at or before start: the next day.")

    @field_validator("start", "end")
    @classmethod
    def _wholehour_of(cls, v: str) -> str:
        hour_of(v)
        return v

    @property
    def wraps(self) -> bool:
        return hour_of(self.end) <= hour_of(self.start)

    def hours(self) -> list[int]:
        a, b = hour_of(self.start), hour_of(self.end)
        return list(range(a, b)) if b > a else [*range(a, 24), *range(b)]


def _default_shifts() -> list[ShiftConfig]:
    return [ShiftConfig(name="early", start="06:00", end="14:00"),
            ShiftConfig(name="late", start="14:00", end="22:00"),
            ShiftConfig(name="night", start="22:00", end="06:00")]


class ReportConfig(BaseModel):
    """configs/reports.yaml (every key optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field("UTC", description="IANA time zone of shifts, days and dates, e.g. Europe/Berlin.")
    shifts: list[ShiftConfig] = Field(default_factory=_default_shifts, description="Shifts; together they "
                                      "must cover each hour of the day exactly once.")
    mass_kg: dict[str, float] = Field(default_factory=dict, description="Mean mass per class (kg) overriding "
                                      "the taxonomy's mass_kg, e.g. measured by weighing a bin.")
    diverted_streams: list[Stream] = Field(default_factory=lambda: list(DIVERTED), description="Streams that "
                                           "count as diverted from residual.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Europe/Berlin") from None
        return v

    @field_validator("mass_kg")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, m in v.items() if not m > 0)
        if bad:
            raise ValueError(f"masses of {bad} must be > 0 kg")
        return v

    @model_validator(mode="after")
    def _check(self) -> ReportConfig:
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"shifts: names {names} repeat; give each shift its own name")
        cover = [h for s in self.shifts for h in s.hours()]
        missing, twice = sorted(set(range(24)) - set(cover)), sorted({h for h in cover if cover.count(h) > 1})
        if self.shifts and (missing or twice):
            raise ValueError(f"shifts must cover each hour once: hours {missing} are in no shift, {twice} in "
                             "two; adjust start/end")
        if {Stream.RESIDUAL, Stream.MANUAL} & set(self.diverted_streams):
            raise ValueError("diverted_streams: residual and manual are not diversion; list material streams")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def masses(self, taxonomy: Taxonomy) -> dict[str, float]:
        unknown = sorted(set(self.mass_kg) - set(taxonomy.names))
        if unknown:
            raise ReportError(f"reports mass_kg: classes {unknown} are not in the taxonomy; use some of "
                              f"{taxonomy.names}")
        return {c.name: self.mass_kg.get(c.name, c.mass_kg) for c in taxonomy.classes}

    def shift_ofhour_of(self) -> dict[int, ShiftConfig]:
        return {h: s for s in self.shifts for h in s.hours()}


def load_report_config(path: Path | None) -> ReportConfig:
    """The reports config at ``path``; defaults when ``path`` is None or the file does not exist."""
    if path is None or not Path(path).is_file():
        return ReportConfig()
    try:
        return ReportConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except yaml.YAMLError as exc:
        raise ReportError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ReportError(f"{path}: invalid reports config: {where}") from exc
