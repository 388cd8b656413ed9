"""Patina: exact, D1-importable SQL backups of Cloudflare D1 databases, on Dagster."""

__version__ = "0.1.0"
