"""Odd input never makes a 500: the queries the issue found answer 422 naming the field, and property-based
tests (hypothesis, bounded so they run in ``make test``) throw odd values at every GET route's query
parameters and odd documents at the config loader."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from access_kit import sign_in
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ui_seed import Running, seed

from station.access import COOKIE
from station.api import create_app
from station.config import ConfigError, parse_config
from station.metrics import StationMetrics
from ui.app import add_console_routes, make_console
from ui.settings import ConsoleSettings

BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# GET routes with query parameters, and their parameter names (what the fuzzer varies)
QUERIES = {
    "/api/items": ["stream", "class", "hazard", "reason", "since", "until", "page", "page_size"],
    "/api/throughput": ["bucket", "since", "until", "origin"],
    "/api/alarms": ["active", "limit"],
    "/impact.json": ["from", "to"],
    "/impact": ["from", "to"],
    "/api/console/review": ["limit"],
    "/api/console/corrections": ["item_id"],
    "/api/console/audit": ["limit", "action"],
    "/api/console/export": ["format"],
}
ODD = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e308", "-1e308", "1e999", str(2**62), str(-(2**63)), "0", "-1",
                     "9999-12-31", "0001-01-01", "2026-02-30", "", " ", "true", "null", "%00", "../../etc/passwd",
                     "hour", "shift", "day", "yolo", "coco", "battery", "plastic"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    seeded = seed(tmp_path_factory.mktemp("fuzz"))
    web = create_app(seeded.store, Running(), seeded.live, StationMetrics(), seeded.cfg)
    add_console_routes(web, make_console(web, None, seeded.cfg, ConsoleSettings()))
    with TestClient(web, raise_server_exceptions=False,
                    cookies={COOKIE: sign_in(seeded.store, "admin", "admin", ttl_s=86_400)}) as c:
        yield c
    seeded.store.close()


@pytest.mark.parametrize(("query", "field"), [
    ("/impact?from=9999-12-31", "from"),
    ("/impact?to=9999-12-31", "to"),
    ("/impact.json?to=9999-12-31", "to"),
    ("/api/items?page=4611686018427387904", "page"),  # 2**62
    ("/api/throughput?origin=inf", "origin"),
    ("/api/throughput?origin=nan", "origin"),
    ("/api/throughput?since=inf", "since"),
    ("/api/throughput?until=nan", "until"),
    ("/api/items?since=-inf", "since"),
])
def test_the_odd_queries_of_the_issue_answer_422_naming_the_field(client: TestClient, query: str,
                                                                  field: str) -> None:
    r = client.get(query)
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["query", field]]


@pytest.mark.parametrize("path", sorted(QUERIES))
def test_odd_query_values_never_make_a_server_error(client: TestClient, path: str) -> None:
    names = QUERIES[path]

    @BOUNDED
    @given(st.dictionaries(st.sampled_from(names), ODD, max_size=len(names)))
    def check(params: dict[str, str]) -> None:
        r = client.get(path, params=params)
        assert r.status_code < 500, (path, params, r.text[:300])
        if r.status_code == 422 and isinstance(r.json()["detail"], list):
            assert all(e["loc"][0] == "query" and e["loc"][-1] in names for e in r.json()["detail"])

    check()


@BOUNDED
@given(st.text(alphabet=st.characters(min_codepoint=0x20, blacklist_categories=["Cs", "Cc"]), max_size=40))
def test_odd_path_parameters_never_make_a_server_error(client: TestClient, segment: str) -> None:
    for template in ("/api/items/{}", "/api/items/{}/crop", "/console/frames/{}.jpg"):
        r = client.get(template.format(segment.replace("/", "_").replace("?", "_").replace("#", "_") or "x"))
        assert r.status_code < 500, (template, segment, r.text[:200])
    r = client.post(f"/api/alarms/{segment.replace('/', '_').replace('?', '_').replace('#', '_') or 'x'}/ack")
    assert r.status_code < 500


SECTIONS = ["source", "simulator", "model", "tracker", "decision", "routing", "actuator", "store", "api", "pipeline",
            "security"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                         max_leaves=8)
FIELDS = {"kind", "uri", "fps", "port", "host", "path", "confidence", "url", "session_idle_s", "lock_after",
          "allow_simulated_source", "bins", "px_per_m", "ticks_per_m", "queue_size", "hash_workers"}


@settings(max_examples=150, deadline=None)
@given(st.one_of(DOCUMENTS, st.dictionaries(st.sampled_from(SECTIONS),
                                            st.dictionaries(st.sampled_from(sorted(FIELDS)), DOCUMENTS, max_size=3),
                                            max_size=4)))
def test_the_config_loader_answers_odd_documents_with_a_config_error(doc: Any) -> None:
    try:
        cfg = parse_config(doc, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    assert all(math.isfinite(v) for v in _floats(cfg.model_dump()))  # it parsed: no inf or nan slipped in


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


@pytest.mark.parametrize(("doc", "where"), [
    ({"source": {"fps": math.inf}}, "source.fps"),
    ({"security": {"session_idle_s": math.nan}}, "security.session_idle_s"),
    ({"api": {"live_fps": math.inf}}, "api.live_fps"),
])
def test_non_finite_numbers_in_a_config_are_refused(doc: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=rf"{where}: Input should be a finite number"):
        parse_config(doc)


@pytest.mark.parametrize(("doc", "message"), [
    ({"actuator": {"kind": "modbus"}}, "source.kind and source.uri to the camera"),
    ({"actuator": {"kind": "mqtt"}, "source": {"kind": "simulator"}}, "allow_simulated_source: true"),
    ({"actuator": {"kind": "modbus", "allow_simulated_source": True}}, None),
    ({"actuator": {"kind": "modbus"}, "source": {"kind": "usb", "uri": "0"}}, None),
    ({"actuator": {"kind": "simulated"}}, None),
])
def test_a_real_actuator_with_simulated_items_is_refused(doc: dict[str, Any], message: str | None) -> None:
    if message is None:
        parse_config(doc)
        return
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(doc)


def test_config_check_names_the_fix(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from station.cli import app

    path = tmp_path / "plc.yaml"
    path.write_text("actuator:\n  kind: modbus\n  host: 10.0.0.9\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "allow_simulated_source" in result.output and "source.kind" in result.output
