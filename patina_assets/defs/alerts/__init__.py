"""Telling people: run and check alerts (sensors), stale backups, missed nights and stuck runs (watch).
Delivery (webhooks, email, the outbox) is plain Python in `patina_assets.notifications`."""

import dagster as dg

from ...config import PatinaConfig
from .sensors import build_alert_sensors
from .watch import build_watch_sensors


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """The alert and watch sensors."""
    return dg.Definitions(sensors=build_alert_sensors(config) + build_watch_sensors(config))
