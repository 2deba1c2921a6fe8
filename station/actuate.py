"""Actuators: hand each ejector command to the PLC as soon as its decision is durable.

Three backends share one small interface, :class:`Actuator`: a simulated one that records commands, a
Modbus TCP one that writes a command mailbox in the PLC's holding registers, and an MQTT one that publishes
a JSON command with QoS 1. Every command carries its target time and encoder count and the PLC fires at the
target, so network latency does not move the ejection. docs/actuators.md holds the register map and topics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import BaseModel
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from station.config import ActuatorConfig, ConfigError
from station.events import Actuation

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

MODBUS_DEFAULT_PORT = 502
MQTT_DEFAULT_PORT = 1883
_T = TypeVar("_T")


class ActuatorError(RuntimeError):
    """The actuator did not take a command; the message names the peer and the fix."""


class DeadlineMissed(ActuatorError):
    """The command could not be handed over before its deadline, so it was not sent (never fired late)."""


def check_deadline(deadline_wall: float | None, peer: str, actuation: Actuation) -> None:
    """Raise DeadlineMissed when ``deadline_wall`` (Unix time) has passed: the command is not sent."""
    if deadline_wall is not None and time.time() >= deadline_wall:
        raise DeadlineMissed(f"{peer}: command for item {actuation.item_id} not sent, "
                             f"{time.time() - deadline_wall:.3f} s past its send deadline")


def _until(deadline_wall: float | None, timeout_s: float) -> float:
    """The wait allowed: ``timeout_s``, shortened to the time left before ``deadline_wall``."""
    if deadline_wall is None:
        return timeout_s
    return max(0.0, min(timeout_s, deadline_wall - time.time()))


class Actuator(Protocol):
    """Fires ejectors. ``fire`` returns once the peer has acknowledged the command; with ``deadline_wall`` it
    raises DeadlineMissed rather than hand the command over after that Unix time."""

    def fire(self, actuation: Actuation, deadline_wall: float | None = None) -> None: ...

    def set_failsafe(self, on: bool, reason: str) -> None:
        """Tell the PLC the station is in (or out of) fail-safe: fire nothing, every item rides to the
        end-of-belt manual bin."""

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------- simulated


@dataclass(frozen=True)
class SentCommand:
    actuation: Actuation
    sent_at_wall: float


class SimulatedActuator:
    """Records every command in order; ``set_offline()`` makes it behave like a dead peer."""

    def __init__(self, offline: bool = False) -> None:
        self._lock = threading.Lock()
        self._sent: list[SentCommand] = []
        self._offline = offline
        self._closed = False
        self.modes: list[tuple[bool, str]] = []

    def set_failsafe(self, on: bool, reason: str) -> None:
        with self._lock:
            self.modes.append((on, reason))

    @property
    def sent(self) -> list[SentCommand]:
        """A snapshot of the commands taken so far, oldest first."""
        with self._lock:
            return list(self._sent)

    def set_offline(self, offline: bool = True) -> None:
        with self._lock:
            self._offline = offline

    def fire(self, actuation: Actuation, deadline_wall: float | None = None) -> None:
        with self._lock:
            if self._closed:
                raise ActuatorError("simulated actuator is closed; create a new one with make_actuator()")
            if self._offline:
                raise ActuatorError("simulated actuator is offline; call set_offline(False) to bring it back")
            check_deadline(deadline_wall, "simulated actuator", actuation)
            self._sent.append(SentCommand(actuation, time.time()))

    def healthy(self) -> bool:
        with self._lock:
            return not (self._offline or self._closed)

    def close(self) -> None:
        with self._lock:
            self._closed = True


# ------------------------------------------------------------------------------------ Modbus register map

# Holding registers: the command mailbox the station writes. The sequence number goes last: the PLC latches
# the mailbox when HR_SEQ changes, so it never sees half a command.
HR_SEQ = 0
HR_CHANNEL = 1
HR_FLAGS = 2
HR_TICKS = 3          # u32, high word first
HR_TIME_MS = 5        # u32, high word first: fire_at_wall in ms, mod 2**32
HR_ITEM = 7           # 8 registers: the item id as 128 bits, high word first
MAILBOX_SIZE = 15
HR_MODE = 15          # 1 = fail-safe (fire nothing: items ride to the end-of-belt manual bin), 0 = normal
FLAG_TICKS_VALID = 0x0001
# Input registers and discrete inputs: what the PLC reports.
IR_HEARTBEAT = 0      # incremented by the PLC every scan (wraps at 2**16)
IR_LATCHED_SEQ = 1    # HR_SEQ of the last mailbox the PLC latched
IR_RESULT = 2         # LatchResult of that mailbox
DI_READY = 0          # PLC in run mode and ejectors armed
DI_FAULT = 1          # an ejector fault (air pressure, valve) is active


class LatchResult(IntEnum):
    ACCEPTED = 0
    QUEUE_FULL = 1
    BAD_CHANNEL = 2
    TOO_LATE = 3


_RESULT_FIX = {
    LatchResult.QUEUE_FULL: "the PLC's ejection queue is full; check the ejectors are firing",
    LatchResult.BAD_CHANNEL: "the channel is not wired on the PLC; check routing.bins channels against the PLC",
    LatchResult.TOO_LATE: "its target had passed when the PLC latched it; check clock sync and belt speed",
}


@dataclass(frozen=True)
class MailboxCommand:
    """One command as it sits in the holding registers (what the PLC latches)."""

    seq: int
    channel: int
    fire_at_ticks: int | None
    """Encoder ticks mod 2**32, or None when the source has no encoder."""
    fire_at_ms: int
    """Wall-clock target in ms mod 2**32."""
    item_key: str
    """The item id's 128 bits as 32 hex chars (the id itself for uuid4-hex ids)."""


def _u32_words(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def _item_bytes(item_id: str) -> bytes:
    """128 bits for the mailbox: uuid4-hex ids as they are, any other id hashed."""
    try:
        raw = bytes.fromhex(item_id)
    except ValueError:
        raw = b""
    return raw if len(raw) == 16 else hashlib.blake2b(item_id.encode(), digest_size=16).digest()


def encode_mailbox(actuation: Actuation) -> list[int]:
    """HR_CHANNEL .. HR_ITEM+7 for one command (everything but the sequence number)."""
    if not 0 <= actuation.channel <= 0xFFFF:
        raise ActuatorError(f"channel {actuation.channel} of bin {actuation.bin!r} does not fit a Modbus "
                            f"register (0..65535); fix routing.bins.{actuation.bin}.channel")
    ticks = actuation.fire_at_ticks
    words = [actuation.channel, FLAG_TICKS_VALID if ticks is not None else 0]
    words += _u32_words(ticks or 0) + _u32_words(round(actuation.fire_at_wall * 1000))
    item = _item_bytes(actuation.item_id)
    words += [int.from_bytes(item[i:i + 2], "big") for i in range(0, 16, 2)]
    return words


def decode_mailbox(registers: Sequence[int]) -> MailboxCommand:
    """The inverse of the station's write, as a PLC reads HR_SEQ .. HR_ITEM+7."""
    if len(registers) < MAILBOX_SIZE:
        raise ValueError(f"mailbox needs {MAILBOX_SIZE} registers from HR{HR_SEQ}, got {len(registers)}")
    ticks = (registers[HR_TICKS] << 16) | registers[HR_TICKS + 1]
    return MailboxCommand(
        seq=registers[HR_SEQ],
        channel=registers[HR_CHANNEL],
        fire_at_ticks=ticks if registers[HR_FLAGS] & FLAG_TICKS_VALID else None,
        fire_at_ms=(registers[HR_TIME_MS] << 16) | registers[HR_TIME_MS + 1],
        item_key=b"".join(r.to_bytes(2, "big") for r in registers[HR_ITEM:HR_ITEM + 8]).hex(),
    )


def next_seq(seq: int) -> int:
    """1 .. 65535 and round again; 0 means 'nothing written since the PLC started'."""
    return seq % 0xFFFF + 1


# ----------------------------------------------------------------------------------------------- Modbus


class ModbusActuator:
    """Writes each command into the PLC's mailbox and waits until the PLC has latched it.

    Connects on first use and again on the next call after the peer comes back.
    """

    _ACK_POLL_S = 0.002  # between reads of IR_LATCHED_SEQ while waiting for the PLC's scan

    def __init__(self, host: str, port: int = MODBUS_DEFAULT_PORT, unit_id: int = 1, timeout_s: float = 1.0,
                 heartbeat_timeout_s: float = 2.0) -> None:
        self.peer = f"{host}:{port}"
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        self._lock = threading.Lock()
        self._seq: int | None = None  # last HR_SEQ we know the PLC holds; read back after each connect
        self._heartbeat: tuple[int, float] | None = None  # last value seen and when it last changed
        self._closed = False

    def fire(self, actuation: Actuation, deadline_wall: float | None = None) -> None:
        payload = encode_mailbox(actuation)
        with self._lock:
            if self._closed:
                raise ActuatorError(f"modbus {self.peer}: actuator is closed; create a new one")
            check_deadline(deadline_wall, f"modbus {self.peer}", actuation)
            try:
                seq = self._fresh(lambda: self._stage(payload))
                check_deadline(deadline_wall, f"modbus {self.peer}", actuation)  # the strobe is the handover
                self._write(HR_SEQ, [seq])  # the strobe: not retried, a resend could fire twice
                self._seq = seq
                result = self._await_latch(seq)
            except (ModbusException, OSError) as exc:
                self._drop_connection()
                raise ActuatorError(f"modbus {self.peer} unreachable: {exc}; check the PLC / actuator.host "
                                    "and actuator.port") from exc
        if result is not LatchResult.ACCEPTED:
            raise ActuatorError(f"modbus {self.peer}: PLC refused command {seq} for item {actuation.item_id} "
                                f"({result.name}): {_RESULT_FIX[result]}")
        log.debug("modbus %s latched command %d: item %s channel %d", self.peer, seq, actuation.item_id,
                  actuation.channel)

    def set_failsafe(self, on: bool, reason: str) -> None:
        with self._lock:
            try:
                self._fresh(lambda: self._write(HR_MODE, [int(on)]))
            except (ModbusException, OSError) as exc:
                self._drop_connection()
                raise ActuatorError(f"modbus {self.peer} unreachable: {exc}; fail-safe mode ({reason}) not "
                                    "written to HR15") from exc

    def healthy(self) -> bool:
        """PLC reachable, ready, no ejector fault, heartbeat moving."""
        with self._lock:
            if self._closed:
                return False
            try:
                beat = self._fresh(lambda: self._read(self._client.read_input_registers, IR_HEARTBEAT, 1).registers[0])
                ready, fault = self._read(self._client.read_discrete_inputs, DI_READY, 2).bits[:2]
            except (ModbusException, OSError, ActuatorError) as exc:
                log.warning("modbus %s not healthy: %s", self.peer, exc)
                self._drop_connection()
                return False
            return bool(ready) and not fault and self._heartbeat_moving(beat)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._client.close()

    def _fresh(self, request: Callable[[], _T]) -> _T:
        """Run requests that are safe to repeat; a socket left from a peer that went away gets one retry."""
        was_connected = self._client.connected
        try:
            return request()
        except (ModbusException, OSError):
            self._drop_connection()
            if not was_connected:
                raise
        return request()

    def _stage(self, payload: list[int]) -> int:
        """Write the mailbox (without its strobe) and return the sequence number that will latch it."""
        if self._seq is None:
            self._seq = self._read(self._client.read_holding_registers, HR_SEQ, 1).registers[0]
        self._write(HR_CHANNEL, payload)
        return next_seq(self._seq)

    def _await_latch(self, seq: int) -> LatchResult:
        deadline = time.monotonic() + self.timeout_s
        while True:
            latched, result = self._read(self._client.read_input_registers, IR_LATCHED_SEQ, 2).registers[:2]
            if latched == seq:
                return self._latch_result(result)
            if time.monotonic() > deadline:
                raise ActuatorError(f"modbus {self.peer}: the PLC did not latch command {seq} within "
                                    f"{self.timeout_s}s (last latched {latched}); check the PLC program is "
                                    "running and scans the mailbox (docs/actuators.md)")
            time.sleep(self._ACK_POLL_S)

    def _latch_result(self, code: int) -> LatchResult:
        try:
            return LatchResult(code)
        except ValueError:
            raise ActuatorError(f"modbus {self.peer}: the PLC reported unknown result {code} in IR{IR_RESULT}; "
                                "check the PLC program against docs/actuators.md") from None

    def _read(self, request: Callable[..., ModbusPDU], address: int, count: int) -> ModbusPDU:
        response = request(address, count=count, device_id=self.unit_id)
        if response.isError():
            raise ActuatorError(f"modbus {self.peer} unit {self.unit_id} refused to read {count} at {address}: "
                                f"{response}; check actuator.unit_id and the register map (docs/actuators.md)")
        return response

    def _write(self, address: int, values: list[int]) -> None:
        response = self._client.write_registers(address, values, device_id=self.unit_id)
        if response.isError():
            raise ActuatorError(f"modbus {self.peer} unit {self.unit_id} refused the write to HR{address}: "
                                f"{response}; check actuator.unit_id and the register map (docs/actuators.md)")

    def _drop_connection(self) -> None:
        self._client.close()
        self._seq = None

    def _heartbeat_moving(self, beat: int) -> bool:
        now = time.monotonic()
        if self._heartbeat is None or self._heartbeat[0] != beat:
            self._heartbeat = (beat, now)
            return True
        stale = now - self._heartbeat[1] > self.heartbeat_timeout_s
        if stale:
            log.warning("modbus %s: PLC heartbeat stuck at %d for over %.1fs", self.peer, beat,
                        self.heartbeat_timeout_s)
        return not stale


# ------------------------------------------------------------------------------------------------- MQTT


@dataclass(frozen=True)
class EjectCommand:
    """The JSON body published to ``{prefix}/{station}/eject/{channel}``."""

    station_id: str
    actuation_id: str
    item_id: str
    bin: str
    channel: int
    fire_at: float
    fire_at_ticks: int | None
    fire_at_wall: float
    sent_at_wall: float

    @classmethod
    def of(cls, actuation: Actuation, station_id: str) -> EjectCommand:
        return cls(station_id=station_id, actuation_id=actuation.actuation_id, item_id=actuation.item_id,
                   bin=actuation.bin, channel=actuation.channel, fire_at=actuation.fire_at,
                   fire_at_ticks=actuation.fire_at_ticks, fire_at_wall=actuation.fire_at_wall,
                   sent_at_wall=time.time())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> EjectCommand:
        return cls(**json.loads(text))


def _jsonable(value: object) -> object:
    """Plain JSON values of a pydantic model or dataclass; images (numpy arrays) are left out."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {name: _jsonable(v) for name, v in fields if not isinstance(v, np.ndarray)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _topic_part(name: str, what: str) -> str:
    if not name or any(c in name for c in "/+#"):
        raise ConfigError(f"{what} {name!r} cannot be an MQTT topic level; use letters, digits, '-' and '_'")
    return name


class MqttActuator:
    """Publishes each command with QoS 1 and returns once the broker has acknowledged it (PUBACK).

    ``{prefix}/{station}/status`` holds "online" (retained) while connected and "offline" after a clean
    close or, through the last will, a crash. paho's network thread reconnects after the broker comes back.
    """

    def __init__(self, host: str, port: int = MQTT_DEFAULT_PORT, topic_prefix: str = "sortloop",
                 station_id: str = "station-1", timeout_s: float = 1.0, keepalive_s: int = 15) -> None:
        self.peer = f"{host}:{port}"
        self.host, self.port, self.timeout_s, self.keepalive_s = host, port, timeout_s, keepalive_s
        self.station_id = _topic_part(station_id, "actuator.station_id")
        self.base_topic = f"{topic_prefix.rstrip('/')}/{self.station_id}"
        self.status_topic = f"{self.base_topic}/status"
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = False
        self._client: mqtt.Client
        self._start_client()

    def eject_topic(self, channel: int) -> str:
        return f"{self.base_topic}/eject/{channel}"

    def telemetry_topic(self, kind: str) -> str:
        return f"{self.base_topic}/telemetry/{_topic_part(kind, 'telemetry kind')}"

    def fire(self, actuation: Actuation, deadline_wall: float | None = None) -> None:
        topic = self.eject_topic(actuation.channel)
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            if self._closed:
                raise ActuatorError(f"mqtt {self.peer}: actuator is closed; create a new one")
            connected = self._connected.wait(_until(deadline_wall, self.timeout_s))
            check_deadline(deadline_wall, f"mqtt {self.peer}", actuation)
            if not connected:
                raise ActuatorError(f"mqtt broker {self.peer} unreachable: not connected within {self.timeout_s}s; "
                                    "check the broker / actuator.host and actuator.port")
            body = EjectCommand.of(actuation, self.station_id).to_json()  # sent_at_wall: now
            info = self._client.publish(topic, body, qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                # paho would resend it after a reconnect: a command reported failed must not fire later
                self._restart_client()
                why = "no PUBACK" if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS else mqtt.error_string(info.rc)
                raise ActuatorError(f"mqtt broker {self.peer} did not acknowledge {topic} within "
                                    f"{self.timeout_s}s ({why}); check the broker is running and not overloaded")
        log.debug("mqtt %s: published %s for item %s", self.peer, topic, actuation.item_id)

    def publish_telemetry(self, kind: str, payload: BaseModel | DataclassInstance) -> None:
        """Decisions, alarms …: QoS 0 to ``{prefix}/{station}/telemetry/{kind}``; dropped while offline."""
        if not isinstance(payload, BaseModel) and not dataclasses.is_dataclass(payload):
            raise TypeError(f"publish_telemetry takes a pydantic model or a dataclass, got "
                            f"{type(payload).__name__}; wrap the payload in a typed event")
        info = self._client.publish(self.telemetry_topic(kind), json.dumps(_jsonable(payload)), qos=0)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("mqtt %s: telemetry %s dropped: %s", self.peer, kind, mqtt.error_string(info.rc))

    def set_failsafe(self, on: bool, reason: str) -> None:
        """Retained ``{prefix}/{station}/mode``: {"mode": "failsafe" | "normal", "reason": …}."""
        body = json.dumps({"mode": "failsafe" if on else "normal", "reason": reason, "at": time.time()})
        info = self._client.publish(f"{self.base_topic}/mode", body, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ActuatorError(f"mqtt broker {self.peer}: mode not published ({mqtt.error_string(info.rc)})")

    def healthy(self) -> bool:
        return not self._closed and self._connected.is_set()

    def close(self) -> None:
        """Say "offline" (a clean disconnect does not trigger the last will), then disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._connected.is_set():
                info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
                if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    info.wait_for_publish(self.timeout_s)
            self._stop_client()

    def _start_client(self) -> None:
        """A new paho client, made current before its network thread starts so its callbacks count."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sortloop-{self.station_id}")
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        client.loop_start()

    def _stop_client(self) -> None:
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def _restart_client(self) -> None:
        self._stop_client()
        self._start_client()

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: mqtt.ReasonCode, _properties: object) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            log.warning("mqtt %s refused the connection: %s", self.peer, reason)
            return
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._connected.set()
        log.info("mqtt %s connected as %s", self.peer, self.station_id)

    def _on_disconnect(self, client: mqtt.Client, _userdata: object, _flags: object,
                       reason: mqtt.ReasonCode, _properties: object) -> None:
        if client is self._client:
            self._connected.clear()
            log.warning("mqtt %s disconnected: %s", self.peer, reason)


def make_actuator(cfg: ActuatorConfig) -> Actuator:
    """The configured backend; port 0 means the protocol default (502 Modbus, 1883 MQTT)."""
    if cfg.kind == "modbus":
        return ModbusActuator(cfg.host, cfg.port or MODBUS_DEFAULT_PORT, cfg.unit_id, cfg.timeout_s)
    if cfg.kind == "mqtt":
        return MqttActuator(cfg.host, cfg.port or MQTT_DEFAULT_PORT, cfg.topic_prefix, cfg.station_id,
                            cfg.timeout_s)
    return SimulatedActuator()
