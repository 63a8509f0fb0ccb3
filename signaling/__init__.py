"""Signaling: the message schema, the FastAPI server and the async Python client.

Independent of ``devices`` and ``media``; the ``telemed`` package composes them.
"""
