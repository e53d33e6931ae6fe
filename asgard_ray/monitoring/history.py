"""History queries over partition summaries, reading records only for the days that need them.

Totals (``total_records``, alerts, metric types, date range) of whole days inside the query's range
come from the partition summaries; records are fetched (from the actor's memory, or from S3 for days
past its horizon) only for the days at the edges of the range and the days that hold the requested
page. So a page of a model's newest records costs what it did when every record was in memory, and
a page deep in a year of history reads a day or two from S3, not the year.
"""

from __future__ import annotations

from collections.abc import Callable

from asgard_ray.monitoring.schemas import HistoryRequest, HistoryResponse, HistorySummary, MonitoringRecord, format_ts
from asgard_ray.monitoring.summary import Match, PartitionSummary

__all__ = ["query_history"]


def _passes(r: MonitoringRecord, q: HistoryRequest, start: str | None, end: str | None) -> bool:
    return (
        (q.model_version is None or r.model_version == q.model_version)
        and (q.metric_type is None or r.metric_type == q.metric_type)
        and (not q.alerts_only or r.alert_triggered)
        and (start is None or r.timestamp >= start)
        and (end is None or r.timestamp <= end)
    )


def query_history(
    query: HistoryRequest, partitions: dict[str, PartitionSummary], fetch_day: Callable[[str], list[MonitoringRecord]]
) -> HistoryResponse:
    """Answer a history query for one model from its partitions (date -> summary), newest first.

    ``fetch_day(date)`` returns that day's records, oldest first.
    """
    start = format_ts(query.start_date) if query.start_date else None
    end = format_ts(query.end_date) if query.end_date else None
    lo_page, hi_page = query.offset, query.offset + query.limit
    total = Match()
    page: list[MonitoringRecord] = []
    dates = sorted((d for d in partitions if (start is None or d >= start[:10]) and (end is None or d <= end[:10])), reverse=True)
    for date in dates:
        whole_day = (start is None or start <= f"{date}T00:00:00.000000Z") and (end is None or end >= f"{date}T23:59:59.999999Z")
        if whole_day:
            counted = partitions[date].matching(query.model_version, query.metric_type, query.alerts_only)
            if counted.count == 0:
                continue
            if not (total.count < hi_page and total.count + counted.count > lo_page):
                total.merge(counted)  # no record of this day is on the page: the summary is enough
                continue
        matched = [r for r in reversed(fetch_day(date)) if _passes(r, query, start, end)]
        day = Match()
        for i, r in enumerate(matched):
            if lo_page <= total.count + i < hi_page:
                page.append(r)
            day.add(1, len(r.alerts), r.metric_type, r.timestamp, r.timestamp)
        total.merge(day)
    date_range = {"start": start or total.first, "end": end or total.last}
    return HistoryResponse(
        model_name=query.model_name,
        model_version=query.model_version,
        total_records=total.count,
        records=page,
        summary=HistorySummary(total_alerts=total.alerts, metric_types=sorted(total.types), date_range=date_range),
        limit=query.limit,
        offset=query.offset,
        has_more=query.offset + len(page) < total.count,
    )
