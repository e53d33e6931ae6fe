"""First-run preparation of the embedded stack's storage and Feast repo (idempotent)."""

from __future__ import annotations

from asgard_ray.config import Settings
from asgard_ray.features.store import write_repo
from asgard_ray.local.demo_data import write_customer_aggregates
from asgard_ray.storage import ensure_buckets

__all__ = ["prepare_feast_repo", "prepare_storage"]


def prepare_storage(settings: Settings) -> None:
    """Create the platform and output buckets and the demo gold table."""
    ensure_buckets(settings, list(dict.fromkeys([settings.s3_bucket, *settings.asgard_output_buckets])))
    write_customer_aggregates(settings)


def prepare_feast_repo(settings: Settings) -> None:
    """Write ``feature_store.yaml`` from the settings."""
    write_repo(settings)
