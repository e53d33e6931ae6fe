"""The drift report: per-column histogram overlays of reference vs current, logged to MLflow.

Drawn with matplotlib's object API on an Agg canvas (no GUI backend, no global pyplot state), so it
runs in any Ray worker. The PNG and a JSON summary go to the model version's monitoring run under
``drift_reports/<job_id>/``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from asgard_ray.config import Settings

__all__ = ["log_report", "render_png"]

log = logging.getLogger(__name__)


def render_png(charts: dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]], title: str) -> bytes:
    """One panel per column: reference and current densities on common bins, with PSI and KS in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(charts)
    cols = min(3, max(len(names), 1))
    rows = max(math.ceil(len(names) / cols), 1)
    fig = Figure(figsize=(5 * cols, 3.4 * rows), dpi=90)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ref, cur, metrics = charts[name]
        ax = fig.add_subplot(rows, cols, i + 1)
        both = np.concatenate([ref, cur]) if ref.size or cur.size else np.zeros(1)
        lo, hi = np.quantile(both, [0.005, 0.995]) if both.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31).tolist()
        if ref.size:
            ax.hist(np.clip(ref, lo, hi), bins=bins, density=True, alpha=0.55, label="reference (training)", color="#4c78a8")
        if cur.size:
            ax.hist(np.clip(cur, lo, hi), bins=bins, density=True, alpha=0.55, label="current (scored)", color="#f58518")
        ax.set_title(
            f"{name}\nPSI {metrics.get('psi', float('nan')):.3f}  KS {metrics.get('ks_statistic', float('nan')):.3f}"
            f"  p {metrics.get('ks_pvalue', float('nan')):.3g}",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def log_report(
    settings: Settings, run_id: str, job_id: str, charts: dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]], result: dict[str, Any]
) -> list[str]:
    """Log the PNG and the JSON summary to the monitoring run; return the artifact paths."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    title = f"{result['model_name']} v{result['model_version']} - drift job {job_id} ({result['rows']} rows)"
    folder = f"drift_reports/{job_id}"
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "drift_report.png"
        png.write_bytes(render_png(charts, title))
        summary = Path(tmp) / "drift_summary.json"
        summary.write_text(json.dumps({k: v for k, v in result.items() if k != "report_artifacts"}, indent=2, default=str))
        client.log_artifact(run_id, str(png), folder)
        client.log_artifact(run_id, str(summary), folder)
    client.set_tag(run_id, "asgard.monitoring.last_drift_report", f"{folder}/drift_report.png")
    log.info("drift report of job %s logged to run %s under %s", job_id, run_id, folder)
    return [f"{folder}/drift_report.png", f"{folder}/drift_summary.json"]
