"""Alembic's migrations of Countersign's one database (run through store/schema.py, never by hand)."""
