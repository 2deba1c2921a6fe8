"""Config: unknown keys and bad values are refused with the YAML path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from station.config import ConfigError, ModelConfig, StationConfig, load_config, parse_config
from station.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_the_documented_default() -> None:
    assert load_config(ROOT / "configs" / "station.yaml") == StationConfig()


def test_every_field_is_described() -> None:
    def walk(schema: dict, defs: dict, path: str) -> list[str]:
        missing = []
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{path}{name}")
        return missing

    schema = StationConfig.model_json_schema()
    missing = walk(schema, schema["$defs"], "")
    for name, sub in schema["$defs"].items():
        missing += walk(sub, schema["$defs"], f"{name}.")
    assert missing == []


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"source": {"kind": "video", "urii": "x"}}, "source.urii: unknown key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"routing": {"hazard_bin": "nope"}}, "hazard_bin names bin 'nope'"),
        ({"model": {"confidence": 2}}, "model.confidence"),
        ({"routing": {"px_per_m": 900}}, "routing.px_per_m (900.0) differs from simulator.px_per_m"),
        ({"routing": {"bins": {"x": {"distance_m": 1}}}}, "routing.bins.x.channel"),
        ([1, 2], "top level must be a mapping"),
    ],
)
def test_bad_config_names_path_and_fix(data: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, "station.yaml")
    assert needle in str(err.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_partial_config_keeps_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"simulator": {"items_per_min": 10}}))
    cfg = load_config(p)
    assert cfg.simulator.items_per_min == 10 and cfg.routing == StationConfig().routing


def test_battery_hazards_are_the_classes_carrying_a_battery() -> None:
    assert load_taxonomy().battery_hazards == {"battery", "phone", "laptop"}


@pytest.mark.parametrize(("hazard_confidence", "confidence", "floor"), [
    (0.1, 0.25, 0.1),
    (0.0, 0.25, 0.0),     # a floor of 0 is a floor (keeps every hazard box), not "off"
    (0.25, 0.25, None),   # at or above `confidence`: turned off
    (0.4, 0.25, None),
])
def test_hazard_floor(hazard_confidence: float, confidence: float, floor: float | None) -> None:
    assert ModelConfig(hazard_confidence=hazard_confidence, confidence=confidence).hazard_floor == floor
