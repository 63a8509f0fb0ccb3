"""Philips IntelliVue Data Export protocol (MIB/RS232 framing; the same messages go over UDP
on the LAN)."""
