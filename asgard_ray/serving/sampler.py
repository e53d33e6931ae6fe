"""What a prediction replica tells the rest of the platform: served-request counts and sampled traffic.

``ServedStats`` counts requests, errors and latency per model (for ``/mlops/status``), and records
each request in the platform's metrics (``asgard_ray.metrics``: requests, rows and a latency
histogram per model, version and route, on Ray's metrics export for Prometheus). ``Sampler`` keeps a share of the predictions it served
(``ASGARD_SERVE_SAMPLE_RATE``) and sends them in small batches to the monitoring actor as
``custom`` records tagged ``source=realtime``, so drift can be looked at over served traffic too.
Sending happens off the request path, in the replica's background loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import Any

from asgard_ray import metrics
from asgard_ray.config import Settings

__all__ = ["Sampler", "ServedStats"]

log = logging.getLogger(__name__)

_FLUSH_ROWS = 200
_FLUSH_S = 10.0
_MAX_BUFFER = 2000


def _pick(ordered: list[float], q: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else None


class ServedStats:
    """Per-model request counters and recent latencies of one process."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._models: dict[str, dict[str, Any]] = {}

    def add(self, model: str, latency_ms: float, ok: bool, *, version: str = "none", route: str = "", rows: int = 0) -> None:
        """Count one request (and record it in the platform's metrics: no-op outside Ray)."""
        entry = self._models.setdefault(model, {"requests": 0, "errors": 0, "total_ms": 0.0, "recent": deque(maxlen=self.window)})
        entry["requests"] += 1
        entry["errors"] += 0 if ok else 1
        entry["total_ms"] += latency_ms
        entry["recent"].append(latency_ms)
        metrics.prediction(model, version, route, latency_ms / 1000, rows=rows, ok=ok)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """``model -> {requests, errors, mean_ms, p50_ms, p99_ms}`` (percentiles over recent requests)."""
        out = {}
        for model, e in self._models.items():
            recent = sorted(e["recent"])
            out[model] = {
                "requests": e["requests"],
                "errors": e["errors"],
                "mean_ms": round(e["total_ms"] / e["requests"], 3),
                "p50_ms": _pick(recent, 0.5),
                "p99_ms": _pick(recent, 0.99),
            }
        return out


class Sampler:
    """Keeps a share of served predictions and sends them to the monitoring actor in batches."""

    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rate = settings.asgard_serve_sample_rate
        self.rng = rng or random.Random()
        self.buffer: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.sent = 0
        self._last = time.monotonic()
        self._client: Any = None

    def offer(self, response: Any) -> None:
        """Keep each row of a response with probability ``rate`` (cheap: no I/O here)."""
        if self.rate <= 0:
            return
        for row in response.predictions:
            if self.rng.random() < self.rate:
                rows = self.buffer.setdefault((response.model_name, row.model_version), [])
                if len(rows) < _MAX_BUFFER:
                    rows.append({**row.features, "prediction": row.prediction})

    def due(self) -> bool:
        """Whether a batch should go out now."""
        size = sum(len(v) for v in self.buffer.values())
        return size >= _FLUSH_ROWS or (size > 0 and time.monotonic() - self._last >= _FLUSH_S)

    async def flush_if_due(self) -> int:
        """Send the buffered samples when due; return the rows sent (kept for the next round on failure)."""
        if not self.due():
            return 0
        batches, self.buffer = self.buffer, {}
        self._last = time.monotonic()
        sent = 0
        for (model, version), rows in batches.items():
            try:
                await asyncio.to_thread(self._send, model, version, rows)
                sent += len(rows)
            except Exception as exc:
                log.warning("could not send %d sampled prediction(s) of %s v%s to monitoring: %s", len(rows), model, version, exc)
                self.buffer.setdefault((model, version), []).extend(rows[:_MAX_BUFFER])
        self.sent += sent
        return sent

    def _send(self, model: str, version: str, rows: list[dict[str, Any]]) -> None:
        from asgard_ray.monitoring.actor import MonitoringClient
        from asgard_ray.monitoring.schemas import MonitoringRequest

        if self._client is None:
            self._client = MonitoringClient(self.settings, timeout_s=30)
        preds = [r["prediction"] for r in rows if isinstance(r.get("prediction"), int | float)]
        metrics: dict[str, float] = {"sampled_rows": float(len(rows))}
        if preds:
            metrics["mean_prediction"] = float(sum(preds) / len(preds))
        self._client.log(
            MonitoringRequest(
                model_name=model,
                model_version=version,
                metric_type="custom",
                metrics=metrics,
                current_data={"rows": rows[:500]},
                tags={"source": "realtime", "sample_rate": str(self.rate)},
            )
        )
        log.info("sent %d sampled real-time prediction(s) of %s v%s to monitoring", len(rows), model, version)
