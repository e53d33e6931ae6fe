"""Names shared across capabilities: MLflow tags and artifact paths that tie a model to its data.

Training writes them; the registry, batch scoring and monitoring read them. Keep them here so the
writer and the readers cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Final

from pydantic import AfterValidator, Field

__all__ = [
    "MAX_USER_TAGS",
    "MAX_USER_TAG_KEY",
    "MAX_USER_TAG_VALUE",
    "MODEL_ARTIFACT",
    "PROFILE_ARTIFACT",
    "RESERVED_TAG_PREFIX",
    "TAG_CLASSES",
    "TAG_ENTITY_HASH",
    "TAG_FEAST_REGISTRY_VERSION",
    "TAG_FEATURE_COLUMNS",
    "TAG_FEATURE_VIEWS",
    "TAG_FRAMEWORK",
    "TAG_GIT_COMMIT",
    "TAG_GOLD_SNAPSHOTS",
    "TAG_GOLD_SNAPSHOT_REF",
    "TAG_GOLD_SNAPSHOT_TAG_ERROR",
    "TAG_JOIN_KEYS",
    "TAG_LABEL",
    "TAG_MODEL_TYPE",
    "TAG_TRAINING_ROWS",
    "UserTags",
    "check_user_tags",
    "gold_snapshot_tag",
    "gold_snapshot_tags",
    "snapshots_from_tags",
]

MODEL_ARTIFACT = "model"
"""Name the best trial's model is logged under in the parent run."""
PROFILE_ARTIFACT = "reference_profile.json"
"""The training reference profile (see ``asgard_ray.monitoring.profile``), at the parent run's root."""

TAG_FEATURE_COLUMNS = "asgard.feature_columns"
"""JSON list of the model's input columns, in order."""
TAG_FEATURE_VIEWS = "asgard.feature_views"
"""JSON list of the Feast feature views the columns came from."""
TAG_FEAST_REGISTRY_VERSION = "asgard.feast_registry_version"
"""Feast registry version id at training time."""
TAG_JOIN_KEYS = "asgard.join_keys"
"""JSON list of the entity join keys."""
TAG_LABEL = "asgard.label"
"""The target column."""
TAG_FRAMEWORK = "asgard.framework"
"""sklearn, xgboost or lightgbm."""
TAG_MODEL_TYPE = "asgard.model_type"
"""classification or regression."""
TAG_TRAINING_ROWS = "asgard.training_rows"
"""Rows used for training."""
TAG_ENTITY_HASH = "asgard.entity_set_hash"
"""sha256 of the sorted entity ids and timestamps used for training."""
TAG_GIT_COMMIT = "asgard.git_commit"
"""Commit of the code that trained the model, when known."""
TAG_CLASSES = "asgard.classes"
"""JSON list of class labels (classification), in predict_proba column order."""

TAG_GOLD_SNAPSHOTS = "asgard.gold_snapshots"
"""JSON ``{table: snapshot id}`` of every gold table the run read (``null``: a Parquet folder, no snapshots)."""
TAG_GOLD_SNAPSHOT_REF = "asgard.gold_snapshot_tag"
"""On a model version: the Iceberg tag (``asgard-<model>-v<version>``) that keeps its training snapshots."""
TAG_GOLD_SNAPSHOT_TAG_ERROR = "asgard.gold_snapshot_tag_error"
"""On a model version: why its training snapshots could not be tagged (registering the run again retries)."""
_GOLD_SNAPSHOT = re.compile(r"^asgard\.gold\.([A-Za-z_][A-Za-z0-9_]{0,127})\.snapshot_id$")


def gold_snapshot_tag(table: str) -> str:
    """The run tag that records the snapshot a run read of gold table ``table``: ``asgard.gold.<table>.snapshot_id``."""
    return f"asgard.gold.{table}.snapshot_id"


def gold_snapshot_tags(snapshots: Mapping[str, int | None]) -> dict[str, str]:
    """The run tags of the snapshots a run read: one per Iceberg table, plus the JSON summary of all."""
    tags = {gold_snapshot_tag(t): str(s) for t, s in snapshots.items() if s is not None}
    if snapshots:
        tags[TAG_GOLD_SNAPSHOTS] = json.dumps(dict(snapshots), sort_keys=True)
    return tags


def snapshots_from_tags(tags: Mapping[str, str]) -> dict[str, int]:
    """The ``{table: snapshot id}`` a run (or a model version) records in its ``asgard.gold.<table>.snapshot_id`` tags."""
    found: dict[str, int] = {}
    for key, value in tags.items():
        match = _GOLD_SNAPSHOT.match(key)
        if match and value.strip().lstrip("-").isdigit():
            found[match.group(1)] = int(value)
    return found


RESERVED_TAG_PREFIX: Final = "asgard."
"""Tags under this prefix are written by the platform only; scoring and monitoring trust them."""
MAX_USER_TAGS: Final = 100
"""Most user tags one request may set."""
MAX_USER_TAG_KEY: Final = 250
"""Longest tag key (MLflow's own limit)."""
MAX_USER_TAG_VALUE: Final = 5000
"""Longest tag value (below MLflow's limits for run and model-version tags)."""


def check_user_tags(tags: dict[str, str], what: str = "tags") -> dict[str, str]:
    """Return ``tags`` if a user may set them, else raise ValueError naming the problem.

    A user tag may not start with ``asgard.`` (any case, leading blanks ignored): those are the
    lineage tags that training writes and scoring trusts, so a user must not set or overwrite them.
    """
    if len(tags) > MAX_USER_TAGS:
        raise ValueError(f"{what} has {len(tags)} entries; at most {MAX_USER_TAGS} are accepted")
    reserved = sorted(k for k in tags if k.strip().lower().startswith(RESERVED_TAG_PREFIX))
    if reserved:
        raise ValueError(
            f"{what} {', '.join(repr(k) for k in reserved)} use the reserved prefix {RESERVED_TAG_PREFIX!r}; "
            "lineage tags are set by the platform only, so rename them"
        )
    for key, value in tags.items():
        if not key.strip():
            raise ValueError(f"{what} keys must not be empty")
        if len(key) > MAX_USER_TAG_KEY:
            raise ValueError(f"{what} key {key[:40]!r}... is longer than {MAX_USER_TAG_KEY} characters")
        if len(value) > MAX_USER_TAG_VALUE:
            raise ValueError(f"{what} value of {key!r} is longer than {MAX_USER_TAG_VALUE} characters")
    return tags


UserTags = Annotated[dict[str, str], AfterValidator(check_user_tags), Field(examples=[{"team": "data-science"}])]
"""Tags a request may set: bounded, and never under the reserved ``asgard.`` prefix."""
