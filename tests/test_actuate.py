"""Actuators against real peers: a simulated PLC over Modbus TCP and a mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel
from servers import FC_WRITE_REGISTERS, ModbusPeer, MosquittoBroker, MqttSubscriber, RegisterWrite

from station.actuate import (
    HR_SEQ,
    IR_LATCHED_SEQ,
    MAILBOX_SIZE,
    ActuatorError,
    EjectCommand,
    MailboxCommand,
    ModbusActuator,
    MqttActuator,
    SimulatedActuator,
    decode_mailbox,
    encode_mailbox,
    make_actuator,
    next_seq,
)
from station.config import ActuatorConfig, ConfigError
from station.events import Actuation, Alarm, Decision, Reason, Severity
from station.taxonomy import Stream

ROOT = Path(__file__).resolve().parent.parent
ITEM = "0123456789abcdef0123456789abcdef"
ITEM_WORDS = [0x0123, 0x4567, 0x89AB, 0xCDEF] * 2


def actuation(n: int = 0, **overrides: Any) -> Actuation:
    base = Actuation(actuation_id=f"act-{n}", item_id=ITEM, bin="plastic", channel=1, fire_at=12.5,
                     fire_at_ticks=0x12345678, fire_at_wall=1.5)
    return replace(base, **overrides)


def wait_until(check: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------- simulated


@pytest.mark.parametrize(("steps", "sent", "healthy"), [
    (["fire", "fire", "fire"], [0, 1, 2], True),
    (["fire", "offline", "fire!", "online", "fire"], [0, 4], True),
    (["offline", "fire!", "fire!"], [], False),
    (["fire", "close", "fire!"], [0], False),
])
def test_simulated_records_in_order(steps: list[str], sent: list[int], healthy: bool) -> None:
    act = SimulatedActuator()
    for n, step in enumerate(steps):
        if step == "fire":
            act.fire(actuation(n))
        elif step == "fire!":
            with pytest.raises(ActuatorError, match=r"offline|closed"):
                act.fire(actuation(n))
        elif step == "close":
            act.close()
        else:
            act.set_offline(step == "offline")
    assert [c.actuation.actuation_id for c in act.sent] == [f"act-{n}" for n in sent]
    assert act.healthy() is healthy


def test_simulated_is_thread_safe_and_keeps_each_callers_order() -> None:
    act = SimulatedActuator()

    def fire_many(thread: int) -> None:
        for i in range(100):
            act.fire(actuation(thread * 1000 + i))

    threads = [threading.Thread(target=fire_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [int(c.actuation.actuation_id.removeprefix("act-")) for c in act.sent]
    assert len(ids) == 400
    for t in range(4):
        assert [i for i in ids if i // 1000 == t] == [t * 1000 + i for i in range(100)]
    assert all(a.sent_at_wall <= b.sent_at_wall for a, b in zip(act.sent, act.sent[1:], strict=False))


def test_simulated_starts_offline_when_asked() -> None:
    act = SimulatedActuator(offline=True)
    assert not act.healthy()
    with pytest.raises(ActuatorError, match="set_offline"):
        act.fire(actuation())


# ----------------------------------------------------------------------------------------- register map


@pytest.mark.parametrize(("overrides", "registers", "error"), [
    ({}, [1, 1, 0x1234, 0x5678, 0, 1500, *ITEM_WORDS], None),
    ({"fire_at_ticks": None, "channel": 6}, [6, 0, 0, 0, 0, 1500, *ITEM_WORDS], None),
    ({"fire_at_ticks": -1}, [1, 1, 0xFFFF, 0xFFFF, 0, 1500, *ITEM_WORDS], None),
    ({"fire_at_ticks": 2**32 + 5}, [1, 1, 0, 5, 0, 1500, *ITEM_WORDS], None),
    ({"fire_at_wall": 4294967.297}, [1, 1, 0x1234, 0x5678, 0, 1, *ITEM_WORDS], None),
    ({"item_id": ITEM.upper()}, [1, 1, 0x1234, 0x5678, 0, 1500, *ITEM_WORDS], None),
    ({"item_id": "item-7"}, [1, 1, 0x1234, 0x5678, 0, 1500, 0x6730, 0xA6A3, 0xA4FC, 0x6D87, 0x67DB, 0x7846,
                             0xA9D5, 0xA6C3], None),
    ({"channel": 70000}, None, "does not fit a Modbus register.*routing.bins.plastic.channel"),
])
def test_mailbox_encoding(overrides: dict[str, Any], registers: list[int] | None, error: str | None) -> None:
    act = actuation(**overrides)
    if error:
        with pytest.raises(ActuatorError, match=error):
            encode_mailbox(act)
        return
    words = encode_mailbox(act)
    assert words == registers
    assert len(words) == MAILBOX_SIZE - 1
    decoded = decode_mailbox([7, *words])
    assert (decoded.seq, decoded.channel) == (7, act.channel)
    assert decoded.fire_at_ticks == (None if act.fire_at_ticks is None else act.fire_at_ticks % 2**32)


@pytest.mark.parametrize(("seq", "expected"), [(0, 1), (1, 2), (65534, 65535), (65535, 1)])
def test_sequence_numbers_skip_zero(seq: int, expected: int) -> None:
    assert next_seq(seq) == expected


# ---------------------------------------------------------------------------------------------- Modbus


def modbus(peer: ModbusPeer, **kwargs: float) -> ModbusActuator:
    return ModbusActuator(peer.host, peer.port, unit_id=peer.unit_id, timeout_s=kwargs.pop("timeout_s", 2.0),
                          **kwargs)


def test_modbus_writes_exactly_the_mailbox_then_the_strobe(modbus_peer: ModbusPeer) -> None:
    act = modbus(modbus_peer)
    act.fire(actuation())
    payload = (1, 1, 0x1234, 0x5678, 0, 1500, *ITEM_WORDS)
    assert modbus_peer.writes == [RegisterWrite(FC_WRITE_REGISTERS, 1, payload),
                                  RegisterWrite(FC_WRITE_REGISTERS, HR_SEQ, (1,))]
    assert modbus_peer.read_holding(0, MAILBOX_SIZE) == [1, *payload]
    assert modbus_peer.read_inputs(IR_LATCHED_SEQ, 2) == [1, 0]
    assert modbus_peer.latched == [MailboxCommand(seq=1, channel=1, fire_at_ticks=0x12345678, fire_at_ms=1500,
                                                  item_key=ITEM)]
    act.close()


def test_modbus_sequence_continues_from_the_plc_across_actuators(modbus_peer: ModbusPeer) -> None:
    first = modbus(modbus_peer)
    first.fire(actuation(0, channel=2))
    first.fire(actuation(1, channel=3))
    first.close()
    second = modbus(modbus_peer)  # a restarted station must not reuse a sequence number the PLC holds
    second.fire(actuation(2, channel=4))
    second.close()
    assert [(c.seq, c.channel) for c in modbus_peer.latched] == [(1, 2), (2, 3), (3, 4)]


def test_modbus_plc_refusal_names_the_reason(modbus_peer: ModbusPeer) -> None:
    act = modbus(modbus_peer)
    with pytest.raises(ActuatorError, match=r"refused command 1 .*BAD_CHANNEL.*routing.bins"):
        act.fire(actuation(channel=modbus_peer.channels + 1))
    assert modbus_peer.latched == []
    act.close()


def test_modbus_plc_that_does_not_scan_times_out() -> None:
    peer = ModbusPeer(scan_s=3600)
    peer.start()
    try:
        act = modbus(peer, timeout_s=0.2)
        with pytest.raises(ActuatorError, match=r"did not latch command 1 within 0.2s.*PLC program"):
            act.fire(actuation())
        act.close()
    finally:
        peer.stop()


@pytest.mark.parametrize(("ready", "fault", "heartbeat_paused", "later"), [
    (True, False, False, True),
    (True, False, True, False),      # a PLC whose heartbeat stopped is not healthy
    (False, False, False, False),    # not in run mode
    (True, True, False, False),      # ejector fault
])
def test_modbus_health(modbus_peer: ModbusPeer, ready: bool, fault: bool, heartbeat_paused: bool,
                       later: bool) -> None:
    modbus_peer.set_status(ready=ready, fault=fault)
    modbus_peer.heartbeat_paused = heartbeat_paused
    act = modbus(modbus_peer, heartbeat_timeout_s=0.2)
    assert act.healthy() is (ready and not fault)
    time.sleep(0.3)
    assert act.healthy() is later
    act.close()


def test_modbus_peer_that_goes_away_and_comes_back(modbus_peer: ModbusPeer) -> None:
    act = modbus(modbus_peer, timeout_s=0.5)
    act.fire(actuation(0))
    modbus_peer.stop()
    with pytest.raises(ActuatorError, match=rf"modbus 127.0.0.1:{modbus_peer.port} unreachable: .*actuator.host"):
        act.fire(actuation(1))
    assert not act.healthy()
    modbus_peer.start()  # same port, fresh datastore (as after a power cycle)
    assert act.healthy()
    act.fire(actuation(2, channel=5))
    assert [(c.seq, c.channel) for c in modbus_peer.latched] == [(1, 1), (1, 5)]
    act.close()


def test_modbus_reconnects_a_stale_socket_without_failing(modbus_peer: ModbusPeer) -> None:
    act = modbus(modbus_peer)
    act.fire(actuation(0))
    modbus_peer.stop()
    modbus_peer.start()
    act.fire(actuation(1, channel=7))  # the old socket is dead: one fresh connection, no error
    assert [c.channel for c in modbus_peer.latched] == [1, 7]
    act.close()


def test_modbus_closed_actuator_refuses(modbus_peer: ModbusPeer) -> None:
    act = modbus(modbus_peer)
    act.close()
    assert not act.healthy()
    with pytest.raises(ActuatorError, match="closed"):
        act.fire(actuation())


# ------------------------------------------------------------------------------------------------ MQTT


def mqtt_actuator(broker: tuple[str, int], station: str = "st-1", timeout_s: float = 2.0) -> MqttActuator:
    act = MqttActuator(broker[0], broker[1], topic_prefix="plant/sortloop", station_id=station,
                       timeout_s=timeout_s)
    assert wait_until(act.healthy), "actuator never connected to the test broker"
    return act


@pytest.mark.parametrize("overrides", [{}, {"channel": 0, "fire_at_ticks": None}, {"channel": 6, "bin": "residual"}])
def test_mqtt_command_reaches_a_subscriber(mosquitto: tuple[str, int], overrides: dict[str, Any]) -> None:
    sub = MqttSubscriber(*mosquitto, topic="plant/sortloop/st-1/eject/#")
    act = mqtt_actuator(mosquitto)
    cmd = actuation(**overrides)
    act.fire(cmd)
    msg = sub.next()
    assert msg.topic == f"plant/sortloop/st-1/eject/{cmd.channel}"
    assert msg.qos == 1
    body = json.loads(msg.payload)
    assert {k: body[k] for k in ("item_id", "actuation_id", "bin", "channel", "fire_at", "fire_at_ticks",
                                 "fire_at_wall", "station_id")} == {
        "item_id": cmd.item_id, "actuation_id": cmd.actuation_id, "bin": cmd.bin, "channel": cmd.channel,
        "fire_at": cmd.fire_at, "fire_at_ticks": cmd.fire_at_ticks, "fire_at_wall": cmd.fire_at_wall,
        "station_id": "st-1"}
    assert EjectCommand.from_json(msg.payload).actuation_id == cmd.actuation_id
    act.close()
    sub.close()


def test_mqtt_status_is_retained_online_then_offline(mosquitto: tuple[str, int]) -> None:
    act = mqtt_actuator(mosquitto)
    late = MqttSubscriber(*mosquitto, topic=act.status_topic)  # joins after: sees the retained value
    msg = late.next()
    assert (msg.payload, msg.retain) == (b"online", True)
    act.close()
    assert late.next().payload == b"offline"
    late.close()
    after = MqttSubscriber(*mosquitto, topic=act.status_topic)
    msg = after.next()
    assert (msg.payload, msg.retain) == (b"offline", True)
    after.close()
    assert not act.healthy()


def test_mqtt_last_will_says_offline_when_the_station_dies(mosquitto: tuple[str, int]) -> None:
    code = ("import sys, time\nfrom station.actuate import MqttActuator\n"
            f"a = MqttActuator({mosquitto[0]!r}, {mosquitto[1]}, 'sortloop', 'doomed', 2.0)\n"
            "while not a.healthy(): time.sleep(0.02)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        sub = MqttSubscriber(*mosquitto, topic="sortloop/doomed/status")
        assert sub.next().payload == b"online"
        os.kill(proc.pid, signal.SIGKILL)  # no DISCONNECT: the broker publishes the will
        assert sub.next().payload == b"offline"
        sub.close()
    finally:
        proc.kill()
        proc.wait()


def test_mqtt_broker_gone_then_back(mosquitto_broker: MosquittoBroker) -> None:
    act = mqtt_actuator(mosquitto_broker.address, timeout_s=0.5)
    mosquitto_broker.stop()
    assert wait_until(lambda: not act.healthy())
    with pytest.raises(ActuatorError, match=rf"mqtt broker 127.0.0.1:{mosquitto_broker.port} unreachable: "
                                            r"not connected within 0.5s.*actuator.host"):
        act.fire(actuation(0))
    mosquitto_broker.start()
    assert wait_until(act.healthy), "paho did not reconnect after the broker came back"
    sub = MqttSubscriber(*mosquitto_broker.address, topic="plant/sortloop/st-1/eject/#")
    act.fire(actuation(1))
    assert json.loads(sub.next().payload)["actuation_id"] == "act-1"
    sub.close()
    act.close()


def test_mqtt_hung_broker_gives_no_puback(mosquitto_broker: MosquittoBroker) -> None:
    act = mqtt_actuator(mosquitto_broker.address, timeout_s=0.3)
    mosquitto_broker.pause()
    try:
        with pytest.raises(ActuatorError, match=r"did not acknowledge plant/sortloop/st-1/eject/1 .*no PUBACK"):
            act.fire(actuation())
    finally:
        mosquitto_broker.resume()
    act.close()


class Throughput(BaseModel):
    items_per_min: float
    stream: Stream


@dataclass(frozen=True)
class Sample:
    count: Any  # a numpy scalar, as numpy-based stages produce them
    image: Any  # an image: left out of telemetry


def decision() -> Decision:
    return Decision(item_id=ITEM, station_id="st-1", track_id=3, frame_index=40, crossed_at=1.25,
                    crossed_ticks=2500, class_name="phone", stream=Stream.ELECTRONICS, hazard=None,
                    confidence=0.8, votes={"phone": 0.8, "battery": float(np.float32(0.2))}, observations=12,
                    reason=Reason.OK, box=(1.0, 2.0, 3.0, 4.0), model_version="m1",
                    crop=np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize(("kind", "payload", "expected", "error"), [
    ("decision", decision(), {"item_id": ITEM, "stream": "electronics", "reason": "ok", "box": [1.0, 2.0, 3.0, 4.0],
                              "votes": {"phone": 0.8, "battery": pytest.approx(0.2)}}, None),
    ("alarm", Alarm(kind="hazard.battery", message="battery on belt", severity=Severity.CRITICAL),
     {"kind": "hazard.battery", "severity": "critical"}, None),
    ("throughput", Throughput(items_per_min=41.5, stream=Stream.PLASTIC),
     {"items_per_min": 41.5, "stream": "plastic"}, None),
    ("sample", Sample(np.int64(3), np.zeros((4, 4), np.uint8)), {"count": 3}, None),
    ("bad/kind", Throughput(items_per_min=1, stream=Stream.PLASTIC), None, ConfigError),
    ("raw", {"not": "typed"}, None, TypeError),
])
def test_mqtt_telemetry(mosquitto: tuple[str, int], kind: str, payload: object, expected: dict[str, object] | None,
                        error: type[Exception] | None) -> None:
    act = mqtt_actuator(mosquitto)
    sub = MqttSubscriber(*mosquitto, topic="plant/sortloop/st-1/telemetry/#")
    if error is not None:
        with pytest.raises(error):
            act.publish_telemetry(kind, payload)  # type: ignore[arg-type]
    else:
        act.publish_telemetry(kind, payload)  # type: ignore[arg-type]
        msg = sub.next()
        body = json.loads(msg.payload)
        assert (msg.topic, msg.qos) == (f"plant/sortloop/st-1/telemetry/{kind}", 0)
        assert {k: body[k] for k in expected or {}} == expected
        assert "crop" not in body and "image" not in body
    sub.close()
    act.close()


@pytest.mark.parametrize("station", ["a/b", "+", "#", ""])
def test_mqtt_station_id_must_be_one_topic_level(station: str) -> None:
    with pytest.raises(ConfigError, match=r"actuator\.station_id"):
        MqttActuator("127.0.0.1", 1, station_id=station)


# ------------------------------------------------------------------------------------------------ factory


@pytest.mark.parametrize(("cfg", "kind", "peer"), [
    (ActuatorConfig(), SimulatedActuator, None),
    (ActuatorConfig(kind="modbus", host="10.0.0.9"), ModbusActuator, "10.0.0.9:502"),
    (ActuatorConfig(kind="modbus", port=5020), ModbusActuator, "127.0.0.1:5020"),
    (ActuatorConfig(kind="mqtt", port=1), MqttActuator, "127.0.0.1:1"),
])
def test_make_actuator(cfg: ActuatorConfig, kind: type, peer: str | None) -> None:
    act = make_actuator(cfg)
    try:
        assert isinstance(act, kind)
        assert getattr(act, "peer", None) == peer
    finally:
        act.close()


def test_make_actuator_mqtt_defaults_to_1883() -> None:
    act = make_actuator(ActuatorConfig(kind="mqtt", station_id="never-connects"))
    try:
        assert isinstance(act, MqttActuator)
        assert act.peer == "127.0.0.1:1883"
        assert act.status_topic == "sortloop/never-connects/status"
    finally:
        act.close()


def test_failsafe_mode_reaches_each_backend(modbus_peer, mosquitto) -> None:
    from servers import MqttSubscriber

    from station.actuate import HR_MODE, ModbusActuator, MqttActuator, SimulatedActuator

    sim = SimulatedActuator()
    sim.set_failsafe(True, "camera lost")
    assert sim.modes == [(True, "camera lost")]

    host, port = modbus_peer.address
    mb = ModbusActuator(host, port)
    mb.set_failsafe(True, "camera lost")
    assert modbus_peer.read_holding(HR_MODE, 1) == [1]
    mb.set_failsafe(False, "recovered")
    assert modbus_peer.read_holding(HR_MODE, 1) == [0]
    mb.close()

    sub = MqttSubscriber(*mosquitto, topic="sortloop/station-1/mode")
    mq = MqttActuator(*mosquitto, timeout_s=3)
    import time

    deadline = time.monotonic() + 5
    while not mq.healthy() and time.monotonic() < deadline:
        time.sleep(0.02)
    mq.set_failsafe(True, "camera lost")
    msg = sub.next("sortloop/station-1/mode")
    assert b'"failsafe"' in msg.payload and b"camera lost" in msg.payload
    mq.close()
    sub.close()
