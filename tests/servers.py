"""Real servers on 127.0.0.1 for tests: a mosquitto broker and a simulated PLC speaking Modbus TCP.

Both can be stopped and started again on the same port, to test a peer that goes away and comes back.
The fixtures in conftest.py wrap them; import the classes from here for anything more specific.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from station.actuate import (
    DI_FAULT,
    DI_READY,
    HR_SEQ,
    IR_HEARTBEAT,
    IR_LATCHED_SEQ,
    MAILBOX_SIZE,
    LatchResult,
    MailboxCommand,
    decode_mailbox,
)

HOST = "127.0.0.1"
MOSQUITTO = "/usr/sbin/mosquitto"
_T = TypeVar("_T")
# Modbus function codes as the server's datastore calls them.
FC_COILS, FC_DISCRETE, FC_HOLDING, FC_INPUT = 1, 2, 3, 4
FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_COILS, FC_WRITE_REGISTERS = 5, 6, 15, 16


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float = 10.0, alive: Any = None) -> None:
    """Block until ``host:port`` accepts; ``alive()`` returning False aborts early (the server died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"server for {host}:{port} exited before it listened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s")


class MosquittoBroker:
    """``/usr/sbin/mosquitto`` as a subprocess on 127.0.0.1:<port>; anonymous, no persistence."""

    def __init__(self, workdir: Path, port: int | None = None, host: str = HOST) -> None:
        self.host, self.port = host, port or free_port(host)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.conf.write_text(f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
                             "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_for_port(self.host, self.port, alive=lambda: self.running)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {exc}\n{self.log.read_text()[-2000:]}") from exc

    def stop(self) -> None:
        """Terminate the broker (its clients see the connection close)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing (a hung broker)."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttSubscriber:
    """A plain paho client subscribed (QoS 1) to ``topic`` before the constructor returns."""

    def __init__(self, host: str, port: int, topic: str = "#", timeout_s: float = 5.0) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.on_message = lambda _c, _u, m: self.messages.put(
            Received(m.topic, bytes(m.payload), m.qos, m.retain))
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.connect(host, port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        if not subscribed.wait(timeout_s):
            self.close()
            raise TimeoutError(f"no SUBACK from {host}:{port} for {topic!r} within {timeout_s}s")

    def next(self, topic: str | None = None, timeout_s: float = 5.0) -> Received:
        """The next message (on ``topic`` if given); TimeoutError if none comes."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if topic is None or message.topic == topic:
                return message
        raise TimeoutError(f"no message on {topic or 'any topic'} within {timeout_s}s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True)
class RegisterWrite:
    """One write request as the PLC received it."""

    function_code: int
    address: int
    values: tuple[int, ...]


class ModbusPeer:
    """A simulated PLC: a pymodbus TCP server in a background thread with the mailbox of station.actuate.

    Every ``scan_s`` it bumps the heartbeat (IR0) and latches the mailbox when HR_SEQ changed, answering
    in IR_LATCHED_SEQ / IR_RESULT (BAD_CHANNEL for channels >= ``channels``). ``writes`` logs every write
    request, ``latched`` every command accepted; both survive a stop/start (the datastore does not).
    """

    def __init__(self, port: int | None = None, unit_id: int = 1, channels: int = 8, scan_s: float = 0.01,
                 host: str = HOST) -> None:
        self.host, self.port = host, port or free_port(host)
        self.unit_id, self.channels, self.scan_s = unit_id, channels, scan_s
        self.writes: list[RegisterWrite] = []
        self.latched: list[MailboxCommand] = []
        self.latched_at: list[float] = []  # wall time of each latch, beside ``latched``
        self.heartbeat_paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._listening.clear()
        self._error = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="modbus-peer", daemon=True)
        self._thread.start()
        if not self._listening.wait(10) or self._error is not None:
            raise RuntimeError(f"modbus peer on {self.host}:{self.port} did not start: {self._error!r}")

    def stop(self) -> None:
        """Close the listener and every connection, as a PLC that lost power."""
        if self._loop is not None and self._stop is not None and self.running:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def read_holding(self, address: int, count: int) -> list[int]:
        return [int(v) for v in self._call(self._get(FC_HOLDING, address, count))]

    def read_inputs(self, address: int, count: int) -> list[int]:
        return [int(v) for v in self._call(self._get(FC_INPUT, address, count))]

    def set_status(self, ready: bool = True, fault: bool = False) -> None:
        self._call(self._set(FC_DISCRETE, DI_READY, [ready, fault]))

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None or not self.running:
            coro.close()
            raise RuntimeError("modbus peer is stopped; start() it first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    async def _get(self, fc: int, address: int, count: int) -> list[int] | list[bool]:
        assert self._server is not None
        return await self._server.async_getValues(self.unit_id, fc, address, count)

    async def _set(self, fc: int, address: int, values: list[int] | list[bool]) -> None:
        assert self._server is not None
        await self._server.async_setValues(self.unit_id, fc, address, values)

    def _device(self) -> SimDevice:
        status = [False] * 16
        status[DI_READY], status[DI_FAULT] = True, False
        return SimDevice(
            id=self.unit_id,
            simdata=(
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],                # coils (unused)
                [SimData(0, values=status, datatype=DataType.BITS)],                      # discrete inputs
                [SimData(0, values=[0] * (MAILBOX_SIZE + 1), datatype=DataType.REGISTERS)],  # mailbox + mode
                [SimData(0, values=[0, 0, 0], datatype=DataType.REGISTERS)],              # heartbeat, ack
            ),
            action=self._on_access,
        )

    async def _serve(self) -> None:
        try:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self._server = ModbusTcpServer(context=self._device(), address=(self.host, self.port))
            await self._server.serve_forever(background=True)
        except BaseException as exc:
            self._error = exc
            self._listening.set()
            raise
        scan = asyncio.create_task(self._scan())
        self._listening.set()
        await self._stop.wait()
        scan.cancel()
        await self._server.shutdown()

    async def _scan(self) -> None:
        beat, last_seq = 0, 0
        while True:
            await asyncio.sleep(self.scan_s)
            if not self.heartbeat_paused:
                beat = (beat + 1) & 0xFFFF
                await self._set(FC_INPUT, IR_HEARTBEAT, [beat])
            mailbox = await self._get(FC_HOLDING, HR_SEQ, MAILBOX_SIZE)
            if mailbox[HR_SEQ] != last_seq:
                last_seq = int(mailbox[HR_SEQ])
                await self._set(FC_INPUT, IR_LATCHED_SEQ, [last_seq, self._latch(decode_mailbox(mailbox))])

    def _latch(self, command: MailboxCommand) -> int:
        if command.channel >= self.channels:
            return LatchResult.BAD_CHANNEL
        self.latched.append(command)
        self.latched_at.append(time.time())
        return LatchResult.ACCEPTED

    async def _on_access(self, function_code: int, _start: int, address: int, _count: int,
                         _registers: list[int], values: list[int] | list[bool] | None) -> ExcCodes | None:
        if values is not None and function_code in (FC_WRITE_COIL, FC_WRITE_REGISTER, FC_WRITE_COILS,
                                                    FC_WRITE_REGISTERS):
            self.writes.append(RegisterWrite(function_code, address, tuple(int(v) for v in values)))
        return None
