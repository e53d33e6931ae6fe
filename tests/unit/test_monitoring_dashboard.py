"""The monitoring page's HTML (pure rendering; the browser test is in tests/e2e)."""

from __future__ import annotations

import json
import re

import numpy as np

from asgard_ray.monitoring.dashboard import render_dashboard
from asgard_ray.monitoring.report import render_png
from asgard_ray.monitoring.schemas import MonitoringRecord


def rec(i: int, model: str = "churn_predictor", version: str = "1", alerts: list[str] | None = None) -> MonitoringRecord:
    return MonitoringRecord(monitoring_id=f"mon-{i}", model_name=model, model_version=version, metric_type="feature_drift",
                            metrics={"psi": i / 10}, alert_triggered=bool(alerts), alerts=alerts or [],
                            timestamp=f"2026-01-01T00:0{i}:00.000000Z")


def test_page_embeds_each_version_and_is_self_contained() -> None:
    page = render_dashboard({("churn_predictor", "1"): [rec(1), rec(2, alerts=["psi drift detected: 0.200"])],
                             ("churn_predictor", "2"): [rec(3, version="2")]})
    data = json.loads(re.search(r"id='monitoring-data'>(.*?)</script>", page, re.S).group(1).replace("<\\/", "</"))
    assert [(v["model_name"], v["model_version"], len(v["records"])) for v in data["versions"]] == [
        ("churn_predictor", "1", 2), ("churn_predictor", "2", 1)]
    assert data["alerts"][0]["alerts"] == ["psi drift detected: 0.200"]
    rest = page.replace("'http://www.w3.org/2000/svg'", "")  # the SVG namespace is a name, not a fetch
    assert "http://" not in rest and "https://" not in rest and "<script src" not in rest  # no CDN


def test_script_tags_in_data_cannot_break_out() -> None:
    page = render_dashboard({("m", "1"): [rec(1, alerts=["</script><script>alert(1)</script>"])]})
    assert "</script><script>alert(1)" not in page


def test_empty_page_says_how_to_fill_it() -> None:
    assert "No monitoring records yet" in render_dashboard({})


def test_drift_report_png() -> None:
    rng = np.random.default_rng(0)
    png = render_png({"a": (rng.normal(0, 1, 500), rng.normal(0.5, 1, 800), {"psi": 0.2, "ks_statistic": 0.2, "ks_pvalue": 1e-5}),
                      "b": (np.array([]), rng.normal(0, 1, 10), {})}, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


HOSTILE = ["<!--<script>", "</script><script>alert(1)</script>", "</SCRIPT >", "<!--", "-->", "&lt;b&gt;", "\u2028x", "]]>"]


def test_hostile_metric_names_and_alerts_cannot_break_the_page() -> None:
    records = [MonitoringRecord(monitoring_id=f"mon-h{i}", model_name="m", model_version="1", metric_type="custom",
                                metrics={name: 0.5, "psi": 0.2}, alert_triggered=True, alerts=[f"{name} drift detected: 0.5"],
                                timestamp=f"2026-01-01T00:0{i}:00.000000Z")
               for i, name in enumerate(HOSTILE)]
    page = render_dashboard({("m", "1"): records}, title="<b>t</b>")
    # exactly the two script elements the page itself opens and closes
    assert page.lower().count("<script") == 2 and page.lower().count("</script") == 2
    assert "<b>t</b>" not in page and "&lt;b&gt;t&lt;/b&gt;" in page
    match = re.search(r"<script type='application/json' id='monitoring-data'>(.*?)</script>", page, re.S)
    assert match is not None
    raw = match.group(1)
    # no character that the HTML tokenizer acts on inside script data survives in the embedded JSON
    assert not set(raw) & {"<", ">", "&", "\u2028", "\u2029"}
    data = json.loads(raw)  # and JSON.parse gives the exact strings back
    names = {m for v in data["versions"] for r in v["records"] for m in r["metrics"]}
    assert names == {*HOSTILE, "psi"}
    assert {a for row in data["alerts"] for a in row["alerts"]} == {f"{n} drift detected: 0.5" for n in HOSTILE}
    # the script writes names with textContent / createTextNode / setAttribute only, never innerHTML with data
    script = re.findall(r"<script>(.*?)</script>", page, re.S)[0]
    assert "innerHTML = '<i style=\"background:' + COLORS" in script and script.count("innerHTML") == 1
