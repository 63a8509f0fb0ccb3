"""Persistence for the signaling server: SQLAlchemy 2 (async) on SQLite or PostgreSQL."""
