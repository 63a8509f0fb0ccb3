"""Sans-I/O codecs, one module per device protocol: bytes in, :mod:`devices.model` events out,
and encoders for the simulators."""
