"""Alert rules: which metrics alert, in which direction, at which threshold.

A rule matches metric names by glob patterns (``*pvalue*``, ``accuracy``) and alerts when the value is
above (``gt``) or below (``lt``) its threshold. A p-value alerts when it is *below* its threshold (a
small p-value is evidence of drift); a distance or score alerts when it is above. Rules apply in
order and the first rule whose pattern matches a metric decides for it, so the specific rules (p-values,
missing rates) come before the broad drift rule. Per-model rules come first, then global rules,
then the defaults; a rule named like a default replaces it (and may give only a new threshold).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from asgard_ray.monitoring.schemas import ALLOWED_METRIC_TYPES
from asgard_ray.types import FiniteFloat

__all__ = ["DEFAULT_RULES", "AlertRule", "RuleSet", "effective_rules", "evaluate", "fired"]


class AlertRule(BaseModel):
    """One threshold rule."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    patterns: list[Annotated[str, Field(min_length=1, max_length=250)]] | None = Field(
        default=None, max_length=50, description="Glob patterns on metric names (case-insensitive)."
    )
    op: Literal["gt", "lt"] | None = Field(default=None, description="gt: alert when above; lt: alert when below.")
    threshold: FiniteFloat | None = Field(default=None, description="A finite number (NaN and Infinity are refused).")
    metric_types: list[str] | None = Field(default=None, description="Only for these metric types; default all.")
    label: str | None = Field(default=None, max_length=200, description="Words in the alert message, e.g. 'drift detected'.")
    enabled: bool = True

    @field_validator("metric_types")
    @classmethod
    def _types(cls, v: list[str] | None) -> list[str] | None:
        bad = [t for t in v or [] if t not in ALLOWED_METRIC_TYPES]
        if bad:
            raise ValueError(f"unknown metric_types {bad}; allowed types are {', '.join(ALLOWED_METRIC_TYPES)}")
        return v

    def matches(self, metric_type: str, metric: str) -> bool:
        """Whether this rule decides for a metric."""
        if self.metric_types and metric_type not in self.metric_types:
            return False
        low = metric.lower()
        return any(fnmatchcase(low, p.lower()) for p in self.patterns or [])

    def check(self, metric: str, value: float) -> str | None:
        """The alert message if ``value`` breaks the rule, else None."""
        assert self.op is not None and self.threshold is not None
        broken = value > self.threshold if self.op == "gt" else value < self.threshold
        if not broken:
            return None
        label = self.label or ("above threshold" if self.op == "gt" else "below threshold")
        if self.name == "drift":
            return f"{metric} {label}: {value:.3f}"  # the seed's message
        return f"{metric} {label}: {value:.3f} ({'>' if self.op == 'gt' else '<'} {self.threshold:g})"


class RuleSet(BaseModel):
    """Rules stored for one scope (global or one model)."""

    model_config = {"extra": "forbid"}

    rules: list[AlertRule] = Field(default_factory=list, max_length=200)


DEFAULT_RULES: list[AlertRule] = [
    AlertRule(
        name="p_value",
        patterns=["*pvalue*", "*p_value*", "*p-value*"],
        op="lt",
        threshold=0.05,
        label="drift detected (p-value below threshold)",
    ),
    AlertRule(name="missing_data", patterns=["*missing*", "*null_rate*"], op="gt", threshold=0.05, label="missing data detected"),
    AlertRule(name="out_of_range", patterns=["*out_of_range*"], op="gt", threshold=0.05, label="values outside the training range"),
    AlertRule(name="schema_mismatch", patterns=["*schema_mismatch*"], op="gt", threshold=0.0, label="schema mismatch"),
    AlertRule(
        name="performance",
        patterns=["accuracy", "*.accuracy", "*_accuracy", "roc_auc", "*.roc_auc"],
        op="lt",
        threshold=0.7,
        label="performance below threshold",
    ),
    AlertRule(
        name="drift",
        patterns=["*drift*", "*psi*", "*js_*", "*jensen*", "*divergence*", "*distance*", "*ks_stat*", "*wasserstein*"],
        op="gt",
        threshold=0.1,
        label="drift detected",
    ),
]


def effective_rules(model_rules: list[AlertRule] | None, global_rules: list[AlertRule] | None) -> list[AlertRule]:
    """Merge per-model, global and default rules; a rule named like a later one replaces it."""
    defaults = {r.name: r for r in DEFAULT_RULES}
    merged: list[AlertRule] = []
    seen: set[str] = set()
    for rule in [*(model_rules or []), *(global_rules or []), *DEFAULT_RULES]:
        if rule.name in seen:
            continue
        seen.add(rule.name)
        base = defaults.get(rule.name)
        if base is not None and rule is not base:
            rule = base.model_copy(update=rule.model_dump(exclude_none=True, exclude_unset=True))
        merged.append(rule)
    return merged


def fired(metric_type: str, metrics: dict[str, float], rules: list[AlertRule]) -> list[tuple[str, str]]:
    """``(rule name, alert message)`` for each metric that breaks its (first matching) rule."""
    alerts: list[tuple[str, str]] = []
    for name, value in metrics.items():
        for rule in rules:
            if rule.matches(metric_type, name):
                if rule.enabled and rule.op is not None and rule.threshold is not None:
                    message = rule.check(name, value)
                    if message:
                        alerts.append((rule.name, message))
                break
    return alerts


def evaluate(metric_type: str, metrics: dict[str, float], rules: list[AlertRule]) -> list[str]:
    """Alert messages for the metrics that break their (first matching) rule."""
    return [message for _, message in fired(metric_type, metrics, rules)]
