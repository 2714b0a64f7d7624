"""Alembic migrations of the store, shipped as package data and run in code (no alembic.ini)."""
