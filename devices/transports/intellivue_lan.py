"""IntelliVue Data Export over the LAN: Connect Indications on UDP 24005, association and
data on UDP 24105, one message a datagram, no serial framing. The session itself is the same
sans-I/O :class:`~devices.protocols.intellivue.host.IntelliVueHost`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from devices.errors import MessageError
from devices.model import DeviceEvent, DeviceState, DeviceStatus
from devices.protocols.intellivue import messages as m
from devices.protocols.intellivue.host import IntelliVueHost
from runtime.queues import DropOldestQueue

log = logging.getLogger(__name__)

INDICATION_PORT = 24005
DATA_PORT = 24105


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, sink: DropOldestQueue[tuple[bytes, tuple[str, int]]]) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sink.put_latest((data, addr))  # a live link: the newest data wins


class IntelliVueLanReader:
    """Associates with one monitor and polls it. With ``monitor`` unset, waits for the first
    Connect Indication on ``indication_port`` and uses the address it announces.

    Call :meth:`run` in a task you own. A session (``make_host`` makes each) that raises on
    a datagram or a timer it did not foresee is logged with its traceback, reported
    DISCONNECTED, and replaced by a new one ``restart_s`` later, which associates afresh."""

    def __init__(
        self,
        monitor: str | None = None,
        *,
        monitor_port: int = DATA_PORT,
        bind: str = "0.0.0.0",  # noqa: S104 (monitors are on the clinic LAN)
        indication_port: int = INDICATION_PORT,
        device_id: str = "intellivue-lan",
        device_tz: str = "UTC",
        tick_s: float = 0.1,
        queue_size: int = 1024,
        make_host: Callable[[str, str], IntelliVueHost] = IntelliVueHost,
        restart_s: float = 1.0,
    ) -> None:
        self._make_host = make_host
        self.restart_s = restart_s
        self.monitor = monitor
        self.monitor_port = monitor_port
        self.bind = bind
        self.indication_port = indication_port
        self.device_id = device_id
        self.device_tz = device_tz
        self.tick_s = tick_s
        self.events: DropOldestQueue[DeviceEvent] = DropOldestQueue(queue_size)
        self.indication: m.ConnectIndication | None = None
        #: Set once Connect Indications are listened for (:attr:`indication_port` is bound).
        self.listening = asyncio.Event()

    @property
    def dropped(self) -> int:
        """Events dropped because the consumer fell behind."""
        return self.events.dropped

    async def _wait_for_indication(self) -> str:
        loop = asyncio.get_running_loop()
        inbox: DropOldestQueue[tuple[bytes, tuple[str, int]]] = DropOldestQueue(64)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(inbox), local_addr=(self.bind, self.indication_port)
        )
        self.indication_port = transport.get_extra_info("sockname")[1]  # when given 0
        self.listening.set()
        try:
            while True:
                data, addr = await inbox.get()
                try:
                    self.indication = m.parse_connect_indication(data)
                except MessageError as exc:
                    log.info("not a connect indication from %s: %s", addr, exc)
                    continue
                self.events.put_latest(
                    DeviceStatus(
                        self.device_id,
                        DeviceState.CONNECTING,
                        time.time(),
                        f"{self.indication.manufacturer} {self.indication.model} at "
                        f"{self.indication.ip}",
                    )
                )
                return self.indication.ip
        finally:
            transport.close()

    async def run(self) -> None:
        """Run until cancelled; raises nothing else once the monitor is known."""
        monitor = self.monitor or await self._wait_for_indication()
        loop = asyncio.get_running_loop()
        inbox: DropOldestQueue[tuple[bytes, tuple[str, int]]] = DropOldestQueue(1024)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(inbox), local_addr=(self.bind, 0)
        )
        target = (monitor, self.monitor_port)
        try:
            while True:
                host = self._make_host(self.device_id, self.device_tz)
                try:
                    await self._session(host, inbox, transport, target)
                except Exception as exc:  # a bug met on this session: start a new one
                    log.exception("%s: session failed; associating afresh", self.device_id)
                    self.events.put_latest(
                        DeviceStatus(
                            self.device_id,
                            DeviceState.DISCONNECTED,
                            time.time(),
                            f"session failed: {exc!r}",
                        )
                    )
                    await asyncio.sleep(self.restart_s)  # a bug met at once again must not spin
        finally:
            with contextlib.suppress(OSError):
                transport.sendto(m.RELEASE_REQUEST, target)
            transport.close()

    async def _session(
        self,
        host: IntelliVueHost,
        inbox: DropOldestQueue[tuple[bytes, tuple[str, int]]],
        transport: asyncio.DatagramTransport,
        target: tuple[str, int],
    ) -> None:
        """Run ``host`` until it raises."""
        while True:
            host.tick(time.time())
            for datagram in host.datagrams_to_send():
                transport.sendto(datagram, target)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    while True:
                        data, addr = await inbox.get()
                        if addr[0] != target[0]:
                            continue  # only the monitor we associate with
                        for event in host.receive_datagram(data, time.time()):
                            self.events.put_latest(event)
                        for datagram in host.datagrams_to_send():
                            transport.sendto(datagram, target)
