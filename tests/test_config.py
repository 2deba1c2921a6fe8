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


def test_shipped_config_is_the_printed_example() -> None:
    """configs/station.yaml is `sortloop config example`: every key written with its description, none stale."""
    from typer.testing import CliRunner

    from station.cli import app

    printed = CliRunner().invoke(app, ["config", "example"]).stdout
    assert (ROOT / "configs" / "station.yaml").read_text() == printed, \
        "configs/station.yaml is stale: run `sortloop config example > configs/station.yaml`"


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
        ({"routing": {"bins": {**{k: v.model_dump() for k, v in StationConfig().routing.bins.items()},
                               "glass": {"channel": 1, "distance_m": 1.0}}}},
         "routing.bins.glass.channel: channel 1 is also bin plastic's"),
        ({"simulator": {"belt_speed_mps": 0.8}}, "routing.belt_speed_mps (0.5) differs from simulator.belt_speed_mps"),
        ({"station_id": "line/1"}, "station_id 'line/1' is not a safe id"),
        ({"station_id": "#"}, "no '/', '+', '#' or spaces"),
        ({"actuator": {"station_id": "a+b"}}, "actuator.station_id 'a+b' is not a safe id"),
        ({"store": {"url": "not a url"}}, "store.url 'not a url' is not a database URL"),
        ({"store": {"url": "mysql://u@h/db"}}, "backend 'mysql' is not supported"),
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


@pytest.mark.parametrize(("content", "allow_empty", "needle"), [
    (b"", False, "the file is empty"),
    (b"# only a comment\n", False, "pass --allow-empty"),
    (b"", True, None),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", False, "not a text file"),
    (bytes(range(256)), True, "not a text file"),
])
def test_empty_and_binary_files(tmp_path: Path, content: bytes, allow_empty: bool, needle: str | None) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    if needle is None:
        assert load_config(p, allow_empty=allow_empty) == StationConfig()
        return
    with pytest.raises(ConfigError, match=needle):
        load_config(p, allow_empty=allow_empty)


@pytest.mark.parametrize(("url", "needle"), [
    ("sqlite:///{tmp}/db/station.db", None),
    ("sqlite:///{tmp}/c.yaml/station.db", "is not a writable folder"),  # under a file: no folder can be made
    ("postgresql+psycopg://nobody@127.0.0.1:1/none", "store.url: cannot connect to postgresql"),
])
def test_config_check_tries_the_store(tmp_path: Path, url: str, needle: str | None) -> None:
    from typer.testing import CliRunner

    from station.cli import app

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"store": {"url": url.format(tmp=tmp_path)}}))
    result = CliRunner().invoke(app, ["config", "check", str(p)])
    if needle is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0 and needle in result.output, result.output


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
