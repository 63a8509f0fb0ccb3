"""Which device's value is primary for a parameter two devices measure (SpO2 from the patient
monitor and from a finger oximeter, say). Pure and synchronous.

Both values always travel to the viewers, each naming its device; the primary one is shown
large, the other beside it. Default: a patient monitor's value (IntelliVue, Datex, a monitor
gateway over HL7) over a stand-alone oximeter's, as a central station does; among equals,
the device first configured. A technician at either site may choose otherwise from the
room; the choice holds for every viewer until changed.
"""

from __future__ import annotations

from media.rtc.events import Sources

#: Protocols of patient monitors: their values win by default.
MONITOR_PROTOCOLS = frozenset({"intellivue", "datex", "hl7"})


class PrimarySources:
    """``devices``: the gateway's devices in configuration order, as (device id, protocol)."""

    def __init__(self, devices: list[tuple[str, str]]) -> None:
        rank = sorted(
            range(len(devices)), key=lambda k: (devices[k][1] not in MONITOR_PROTOCOLS, k)
        )
        self._rank = {devices[k][0]: position for position, k in enumerate(rank)}
        self._seen: dict[str, list[str]] = {}  # parameter -> devices that measured it
        self._chosen: dict[str, str] = {}
        self._chosen_by: str | None = None

    def _rank_of(self, device: str) -> int:
        # An HL7 listener names each monitor gateway that connects ``hl7@host:port``.
        name = device.split("@", 1)[0] if device not in self._rank else device
        return self._rank.get(device, self._rank.get(name, len(self._rank)))

    def _default(self, code: str) -> str:
        return min(self._seen[code], key=lambda d: (self._rank_of(d), d))

    def primary(self) -> dict[str, str]:
        """The primary device of every parameter measured by more than one device."""
        return {
            code: self._chosen.get(code) or self._default(code)
            for code, devices in self._seen.items()
            if len(devices) > 1
        }

    def message(self) -> Sources:
        return Sources(primary=self.primary(), chosen_by=self._chosen_by)

    def observe(self, code: str, device: str) -> Sources | None:
        """A value of ``code`` from ``device`` arrived; the new message when that makes a
        parameter newly measured twice (or more), else None."""
        devices = self._seen.setdefault(code, [])
        if device in devices:
            return None
        devices.append(device)
        return self.message() if len(devices) > 1 else None

    def choose(self, code: str, device: str, by: str) -> Sources | None:
        """A technician chose ``device`` for ``code``; the new message, or None when the
        choice names a device that has not measured it (refused: nothing changes)."""
        if device not in self._seen.get(code, []):
            return None
        self._chosen[code] = device
        self._chosen_by = by
        return self.message()
