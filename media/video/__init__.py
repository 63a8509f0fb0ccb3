"""Frame pipeline: capture (its own thread, newest frame wins), processing off the event loop,
overlays and the machine-readable latency stamp."""
