"""The monitoring page: each model version's metric history and alerts as inline SVG charts.

Self-contained HTML (inline CSS and JS, no CDN: clusters often have no internet). The server embeds
the records as JSON; a small script draws one line chart per model version and metric type, with
alert points in red, and lists recent alerts.
"""

from __future__ import annotations

import html
import json
from typing import Any

from asgard_ray.monitoring.schemas import MonitoringRecord

__all__ = ["embed_json", "render_dashboard"]

# JSON allows \uXXXX for any character: with no '<', '>' or '&' left, no text in the data (metric names,
# alert messages) can close the script element or switch the HTML tokenizer's script states ('<!--').
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def embed_json(payload: Any) -> str:
    """Serialize ``payload`` for a ``<script type='application/json'>`` element; ``JSON.parse`` reads it back unchanged."""
    return json.dumps(payload, allow_nan=False).translate(_SCRIPT_SAFE)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin:24px 0 6px}h3{font-size:13px;margin:10px 0 2px;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:14px}.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.legend span{display:inline-block;margin-right:10px;font-size:11px}.legend i{display:inline-block;width:10px;height:10px;margin-right:3px}
table{border-collapse:collapse;font-size:12px;background:#fff}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.alert{color:#c0392b}.muted{color:#888;font-size:12px}
"""

_SCRIPT = r"""
(function(){
  const data = JSON.parse(document.getElementById('monitoring-data').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#4c78a8','#f58518','#54a24b','#b279a2','#e45756','#72b7b2','#eeca3b','#9d755d'];
  const W = 460, H = 200, PAD = {l: 48, r: 10, t: 10, b: 28};
  function el(name, attrs, parent){ const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
  function chart(container, model, version, type, recs){
    const names = [];
    recs.forEach(r => Object.keys(r.metrics).forEach(m => { if (!names.includes(m)) names.push(m); }));
    const shown = names.slice(0, 8);
    const ts = recs.map(r => Date.parse(r.timestamp));
    let vals = []; recs.forEach(r => shown.forEach(m => { if (m in r.metrics) vals.push(r.metrics[m]); }));
    if (!vals.length) return;
    let t0 = Math.min(...ts), t1 = Math.max(...ts); if (t1 === t0) { t0 -= 1000; t1 += 1000; }
    let v0 = Math.min(0, ...vals), v1 = Math.max(...vals); if (v1 === v0) v1 = v0 + 1;
    const x = t => PAD.l + (t - t0) / (t1 - t0) * (W - PAD.l - PAD.r);
    const y = v => H - PAD.b - (v - v0) / (v1 - v0) * (H - PAD.t - PAD.b);
    const card = document.createElement('div'); card.className = 'card'; container.appendChild(card);
    const h = document.createElement('h3'); h.textContent = type + ' (' + recs.length + ' records)'; card.appendChild(h);
    const svg = el('svg', {width: W, height: H, class: 'chart', 'data-model': model, 'data-version': version,
                           'data-metric-type': type}, card);
    el('line', {x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, stroke: '#999'}, svg);
    el('line', {x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b, stroke: '#999'}, svg);
    [v0, (v0 + v1) / 2, v1].forEach(v => { const t = el('text', {x: 4, y: y(v) + 4, 'font-size': 10, fill: '#666'}, svg);
      t.textContent = (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)); });
    [t0, t1].forEach((t, i) => { const e = el('text', {x: i ? W - PAD.r - 110 : PAD.l, y: H - 8, 'font-size': 10, fill: '#666'}, svg);
      e.textContent = new Date(t).toISOString().slice(0, 16).replace('T', ' '); });
    shown.forEach((m, i) => {
      const pts = recs.filter(r => m in r.metrics).map(r => [x(Date.parse(r.timestamp)), y(r.metrics[m]), r]);
      if (!pts.length) return;
      el('path', {d: pts.map((p, j) => (j ? 'L' : 'M') + p[0].toFixed(1) + ' ' + p[1].toFixed(1)).join(' '),
                  fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 1.5, class: 'series', 'data-metric': m}, svg);
      pts.forEach(p => {
        const alerted = p[2].alerts.some(a => a.startsWith(m + ' '));
        const c = el('circle', {cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: alerted ? 4 : 2.5,
                                fill: alerted ? '#c0392b' : COLORS[i % COLORS.length], class: alerted ? 'alert' : 'point'}, svg);
        el('title', {}, c).textContent = m + ' = ' + p[2].metrics[m] + ' @ ' + p[2].timestamp + (alerted ? ' (alert)' : '');
      });
    });
    const legend = document.createElement('div'); legend.className = 'legend'; card.appendChild(legend);
    shown.forEach((m, i) => { const s = document.createElement('span');
      s.innerHTML = '<i style="background:' + COLORS[i % COLORS.length] + '"></i>'; s.appendChild(document.createTextNode(m));
      legend.appendChild(s); });
    if (names.length > shown.length) { const s = document.createElement('span'); s.className = 'muted';
      s.textContent = '+' + (names.length - shown.length) + ' more metrics'; legend.appendChild(s); }
  }
  const root = document.getElementById('charts');
  let charts = 0;
  data.versions.forEach(v => {
    const h = document.createElement('h2'); h.textContent = v.model_name + ' v' + v.model_version; root.appendChild(h);
    const grid = document.createElement('div'); grid.className = 'grid'; root.appendChild(grid);
    const byType = {}; v.records.forEach(r => (byType[r.metric_type] = byType[r.metric_type] || []).push(r));
    Object.keys(byType).sort().forEach(t => { chart(grid, v.model_name, v.model_version, t, byType[t]); charts++; });
  });
  const tbody = document.getElementById('alerts-body');
  data.alerts.forEach(a => { const tr = document.createElement('tr');
    [a.timestamp, a.model_name + ' v' + a.model_version, a.metric_type, a.alerts.join('; ')].forEach((txt, i) => {
      const td = document.createElement('td'); td.textContent = txt; if (i === 3) td.className = 'alert'; tr.appendChild(td); });
    tbody.appendChild(tr); });
  document.body.setAttribute('data-rendered-charts', String(charts));
})();
"""


def render_dashboard(
    versions: dict[tuple[str, str], list[MonitoringRecord]], title: str = "Asgard model monitoring", max_alerts: int = 50
) -> str:
    """Render the page for each model version's records (oldest first)."""
    payload: dict[str, Any] = {"versions": [], "alerts": []}
    alerts: list[MonitoringRecord] = []
    for (model, version), records in sorted(versions.items()):
        payload["versions"].append(
            {
                "model_name": model,
                "model_version": version,
                "records": [
                    {"timestamp": r.timestamp, "metric_type": r.metric_type, "metrics": r.metrics, "alerts": r.alerts} for r in records
                ],
            }
        )
        alerts.extend(r for r in records if r.alert_triggered)
    alerts.sort(key=lambda r: r.timestamp, reverse=True)
    payload["alerts"] = [
        {
            "timestamp": r.timestamp,
            "model_name": r.model_name,
            "model_version": r.model_version,
            "metric_type": r.metric_type,
            "alerts": r.alerts,
        }
        for r in alerts[:max_alerts]
    ]
    data = embed_json(payload)
    empty = "" if versions else '<p class="muted">No monitoring records yet: POST /mlops/monitoring or compute drift.</p>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{empty}"
        "<div id='charts'></div><h2>Recent alerts</h2><table><thead><tr><th>time</th><th>model</th><th>metric type</th>"
        "<th>alerts</th></tr></thead><tbody id='alerts-body'></tbody></table>"
        f"<script type='application/json' id='monitoring-data'>{data}</script><script>{_SCRIPT}</script></body></html>"
    )
