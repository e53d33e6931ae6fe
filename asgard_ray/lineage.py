"""Names shared across capabilities: MLflow tags and artifact paths that tie a model to its data.

Training writes them; the registry, batch scoring and monitoring read them. Keep them here so the
writer and the readers cannot drift apart.
"""

from __future__ import annotations

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
    "TAG_JOIN_KEYS",
    "TAG_LABEL",
    "TAG_MODEL_TYPE",
    "TAG_TRAINING_ROWS",
    "UserTags",
    "check_user_tags",
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
