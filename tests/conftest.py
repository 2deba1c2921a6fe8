"""Shared pytest fixtures. Real servers on 127.0.0.1 (tests/servers.py): a mosquitto broker, a Modbus PLC."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ModbusPeer, MosquittoBroker


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running mosquitto on a free port; ``stop()``/``start()`` it to lose and regain the broker."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_broker: MosquittoBroker) -> tuple[str, int]:
    """(host, port) of a running mosquitto broker."""
    return mosquitto_broker.address


@pytest.fixture
def modbus_peer() -> Iterator[ModbusPeer]:
    """A simulated PLC (Modbus TCP, unit 1, channels 0..7) on a free port; stop()/start() keeps the port."""
    peer = ModbusPeer()
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The skipped tests, counted by reason, at the end of every run: a skip is never silent."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: Counter[str] = Counter()
    for report in skipped:
        longrepr = report.longrepr
        reasons[longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)] += 1
    terminalreporter.section(f"{len(skipped)} skipped, by reason")
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"{n:5d}  {reason.removeprefix('Skipped: ')}")
