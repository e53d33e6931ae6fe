"""Names shared across capabilities: MLflow tags and artifact paths that tie a model to its data.

Training writes them; the registry, batch scoring and monitoring read them. Keep them here so the
writer and the readers cannot drift apart.
"""

from __future__ import annotations

__all__ = [
    "MODEL_ARTIFACT",
    "PROFILE_ARTIFACT",
    "TAG_ENTITY_HASH",
    "TAG_FEATURE_COLUMNS",
    "TAG_FEATURE_VIEWS",
    "TAG_FEAST_REGISTRY_VERSION",
    "TAG_FRAMEWORK",
    "TAG_GIT_COMMIT",
    "TAG_JOIN_KEYS",
    "TAG_LABEL",
    "TAG_MODEL_TYPE",
    "TAG_TRAINING_ROWS",
    "TAG_CLASSES",
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
