"""R2 bucket backups: one daily-partitioned asset per `r2_buckets:` entry, with its checks and retention inside
its step (assets).  They run in the nightly job (defs/dumps/jobs.py selects their group)."""

import dagster as dg

from ...config import PatinaConfig
from .assets import build_r2_assets, r2_asset_key

__all__ = ["build_definitions", "build_r2_assets", "r2_asset_key"]


def build_definitions(config: PatinaConfig) -> dg.Definitions:
    """The R2 backup assets (none without `r2_buckets:`)."""
    return dg.Definitions(assets=build_r2_assets(config))
