"""Byte transports for device links: serial ports (real or pseudo-terminals), TCP, UDP."""
