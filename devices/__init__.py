"""Bedside devices: the data model, sans-I/O protocol codecs, transports and simulators.

Independent of ``media`` and ``signaling``.
"""
