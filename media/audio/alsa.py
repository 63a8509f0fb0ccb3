"""ALSA devices through PyAV's FFmpeg (the ``alsa`` input and output devices).

The PyAV wheel carries its own libasound, built to look for its configuration under a
directory of the wheel's build machine, where nothing is: it then knows no PCM at all, not
even ``hw:1,0``. Unless the user points it somewhere (``ALSA_CONFIG_DIR`` /
``ALSA_CONFIG_PATH``), :func:`use_system_config` points it at the system's configuration
before the first device is opened.

PulseAudio and PipeWire: the wheel has no ``pulse`` device, and its libasound cannot load the
system's ALSA plugins (``pcm.pulse``), so ``pulse:`` names are refused with that reason; a
USB stethoscope or headset is an ALSA card (``alsa:plughw:1,0``) once the sound server has
let it go.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from media.audio.errors import AudioDeviceError

#: Where Debian (and most distributions) keep ALSA's configuration.
SYSTEM_CONFIG_DIR = Path("/usr/share/alsa")
_configured = threading.Lock()
_done = False


def use_system_config() -> None:
    """Point the wheel's libasound at the system's ALSA configuration, once per process,
    unless the environment already names one. Call before opening an ALSA device."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
        if "ALSA_CONFIG_DIR" in os.environ:
            return
        if (SYSTEM_CONFIG_DIR / "alsa.conf").is_file():
            # Read by libasound when it first loads its configuration (at the first open).
            os.environ["ALSA_CONFIG_DIR"] = str(SYSTEM_CONFIG_DIR)


def device_name(spec: str) -> str:
    """The ALSA PCM name in a device spec: ``alsa:hw:1,0`` -> ``hw:1,0``. Raises
    :class:`AudioDeviceError` for a ``pulse:`` spec (not available, see the module) and
    ValueError for a spec that is not an ALSA device."""
    backend, sep, name = spec.partition(":")
    if backend == "pulse":
        raise AudioDeviceError(
            f"{spec!r}: PulseAudio/PipeWire devices are not available (the installed PyAV has "
            "ALSA but no PulseAudio device); name the ALSA card instead, e.g. alsa:plughw:1,0 "
            "(`arecord -l` / `aplay -l` list them)"
        )
    if backend != "alsa" or not sep or not name:
        raise ValueError(f"{spec!r} is not an ALSA device (alsa:NAME, e.g. alsa:hw:1,0)")
    return name
