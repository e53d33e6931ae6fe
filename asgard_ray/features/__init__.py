"""Feature store on Feast: register feature views over gold tables, retrieve training frames."""

from asgard_ray.features.registry import FeatureRegistry, registry_version
from asgard_ray.features.retrieval import (
    EVENT_TIMESTAMP,
    TrainingFrame,
    build_entity_df,
    build_training_frame,
    start_retrieval,
    training_columns,
)
from asgard_ray.features.sources import table_uri
from asgard_ray.features.specs import (
    FeastStatus,
    FeatureField,
    FeatureSourceSpec,
    FeatureViewInfo,
    FeatureViewList,
    FeatureViewSpec,
    RegisterFeaturesResponse,
)
from asgard_ray.features.store import feature_store, write_repo

__all__ = [
    "EVENT_TIMESTAMP",
    "FeastStatus",
    "FeatureField",
    "FeatureRegistry",
    "FeatureSourceSpec",
    "FeatureViewInfo",
    "FeatureViewList",
    "FeatureViewSpec",
    "RegisterFeaturesResponse",
    "TrainingFrame",
    "build_entity_df",
    "build_training_frame",
    "feature_store",
    "registry_version",
    "start_retrieval",
    "table_uri",
    "training_columns",
    "write_repo",
]
