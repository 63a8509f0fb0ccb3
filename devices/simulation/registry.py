"""Every serial simulator by protocol name."""

from __future__ import annotations

from devices.drivers import Registry
from devices.simulation.intellivue_monitor import IntelliVueSimulator
from devices.simulation.simulators import (
    Cms50LegacySimulator,
    Cms50Simulator,
    DatexSimulator,
    MasimoSimulator,
    NoninSimulator,
    Simulator,
)

SIMULATORS: Registry[type[Simulator]] = Registry(
    {
        cls.name: cls
        for cls in (
            Cms50Simulator,
            Cms50LegacySimulator,
            NoninSimulator,
            MasimoSimulator,
            DatexSimulator,
            IntelliVueSimulator,
        )
    }
)
