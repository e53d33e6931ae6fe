"""Batch scoring on Ray Data: point-in-time features, native predict, partitioned Parquet, manifests."""

from asgard_ray.scoring.manifest import Manifest, ManifestFile, manifest_uri, read_manifest, read_scored_rows
from asgard_ray.scoring.model import ResolvedModel, load_native_model, resolve_model
from asgard_ray.scoring.pipeline import PipelineOptions
from asgard_ray.scoring.plan import ScoringPlan, prepare_plan
from asgard_ray.scoring.runner import run_scoring
from asgard_ray.scoring.schemas import (
    MAX_INLINE_ENTITIES,
    BatchJobList,
    BatchJobStatus,
    BatchScoreRequest,
    BatchScoreResponse,
    EntitiesSource,
)
from asgard_ray.scoring.service import BatchScoringService

__all__ = [
    "MAX_INLINE_ENTITIES",
    "BatchJobList",
    "BatchJobStatus",
    "BatchScoreRequest",
    "BatchScoreResponse",
    "BatchScoringService",
    "EntitiesSource",
    "Manifest",
    "ManifestFile",
    "PipelineOptions",
    "ResolvedModel",
    "ScoringPlan",
    "load_native_model",
    "manifest_uri",
    "prepare_plan",
    "read_manifest",
    "read_scored_rows",
    "resolve_model",
    "run_scoring",
]
