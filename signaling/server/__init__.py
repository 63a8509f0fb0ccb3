"""The FastAPI signaling server. Build it with :func:`signaling.server.app.create_app`."""
