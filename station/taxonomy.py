"""The class taxonomy (``datasets/taxonomy.yaml``, shipped with the package): item class → stream, hazard kind,
mass."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from station.resources import shipped_file


class Stream(StrEnum):
    ELECTRONICS = "electronics"
    PLASTIC = "plastic"
    METAL = "metal"
    TEXTILE = "textile"
    RESIDUAL = "residual"
    MANUAL = "manual"  # not a material: the route for items a person must look at


HazardKind = Literal["none", "battery", "biohazard"]


class TaxonomyError(ValueError):
    """The taxonomy file is missing or malformed."""


class ItemClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Class name as the detector reports it (snake_case).")
    stream: Stream = Field(description="Material stream the class is sorted to.")
    hazard: HazardKind = Field(default="none", description="Hazard kind; 'battery' raises the battery alarm.")
    mass_kg: float = Field(gt=0, description="Mean mass of one item in kg, for reports.")
    description: str = Field(default="", description="What belongs to this class.")


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(description="Taxonomy version; bump when classes change.")
    streams: list[Stream] = Field(description="Material streams (manual is implicit).")
    hazards: list[str] = Field(description="Hazard kinds.")
    classes: list[ItemClass] = Field(description="Item classes in detector order.")

    @model_validator(mode="after")
    def _unique(self) -> Taxonomy:
        names = [c.name for c in self.classes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"classes: duplicate names {sorted(dup)}; each class name must appear once")
        return self

    @cached_property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @cached_property
    def _by_name(self) -> dict[str, ItemClass]:
        return {c.name: c for c in self.classes}

    def get(self, name: str) -> ItemClass:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"class {name!r} is not in the taxonomy (known: {', '.join(self.names)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def index(self, name: str) -> int:
        return self.names.index(self.get(name).name)

    def stream_of(self, name: str) -> Stream:
        return self.get(name).stream

    def hazard_of(self, name: str) -> str | None:
        """Hazard kind of a class, or None when it carries none."""
        h = self.get(name).hazard
        return None if h == "none" else h

    @cached_property
    def battery_hazards(self) -> frozenset[str]:
        """Names of the classes whose hazard is a battery (batteries and battery-bearing devices)."""
        return frozenset(c.name for c in self.classes if c.hazard == "battery")

    @cached_property
    def digest(self) -> str:
        """Stable hash of the class list (names, streams, hazards): stored in model metadata."""
        payload = "\n".join(f"{c.name}|{c.stream.value}|{c.hazard}" for c in self.classes)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_taxonomy() -> Path:
    """The taxonomy the station ships (``datasets/taxonomy.yaml``)."""
    try:
        return shipped_file("taxonomy.yaml")
    except FileNotFoundError as exc:
        raise TaxonomyError(str(exc)) from None


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The taxonomy in ``path``; None: the one the station ships."""
    p = default_taxonomy() if path is None else Path(path)
    if not p.is_file():
        raise TaxonomyError(f"taxonomy file {p} not found; pass the path of datasets/taxonomy.yaml")
    try:
        data = yaml.safe_load(p.read_text())
        return Taxonomy.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise TaxonomyError(f"taxonomy file {p} is invalid: {exc}") from exc
