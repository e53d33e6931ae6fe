"""Real-time predictions on Ray Serve: a prediction app beside the control API, alias following, online features.

Importing this package loads no ML library and starts nothing; the deployment and its helpers
import Ray Serve, Feast and the model libraries when they are used.
"""

from asgard_ray.serving.schemas import DEFAULT_REF, PredictionRow, PredictRequest, PredictResponse, model_ref

__all__ = ["DEFAULT_REF", "PredictRequest", "PredictResponse", "PredictionRow", "model_ref"]
