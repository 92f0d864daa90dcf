"""The judged ratios of issue 25, machine-readable: each scenario appends one JSON line per
ratio to the file named by ``$BENCH_RATIOS`` (``run_all`` sets it), and ``run_all`` prints
them as the "Targets" table at the top of RESULTS.md. Without the variable nothing is
written: a scenario run alone prints its markdown only.

A record: ``metric``, ``value`` (a float), ``measured`` (how it reads), ``target`` (e.g.
``"<= 1.05"``, ``">= 3"``, ``"<= +3%"``), ``met`` (bool) and a short ``detail``.
"""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "BENCH_RATIOS"
# The metrics of issue 25, numbered as there: the Targets table is in this order.
IMPORT = "1. import gateway_async / import aiohttp"
RUNS = "2. client CPU per runs.create / raw aiohttp"
MULTIPART = "3. multipart / one PUT, unshaped loopback"
SHAPED = "4. multipart / one PUT, storage capped per connection"
PUT_SHA256 = "5. one PUT with sha256 / min(curl -T, sha256 alone)"
OTEL = "6. CPU per run, OTel API without SDK / telemetry=False"


def met(value: float, target: str) -> bool:
    """Whether ``value`` meets ``target`` (``"<= 1.05"``, ``">= 0.95"``, ``"<= +3%"``)."""
    op, bound = target.split()
    limit = float(bound.rstrip("%")) / (100 if bound.endswith("%") else 1)
    return value <= limit if op == "<=" else value >= limit


def emit(
    metric: str, value: float, target: str, detail: str, measured: str | None = None
) -> dict[str, Any]:
    """Record one judged ratio (appended to ``$BENCH_RATIOS`` when set) and return it."""
    record = {
        "metric": metric,
        "value": value,
        "measured": measured or f"{value:.2f}",
        "target": target,
        "met": met(value, target),
        "detail": detail,
    }
    write(record)
    return record


def write(record: dict[str, Any]) -> None:
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")


def line(record: dict[str, Any]) -> str:
    """The record as a markdown bullet, for the scenario's own section."""
    verdict = "met" if record["met"] else "missed"
    return (
        f"- {record['metric']}: **{verdict}** ({record['measured']}, target "
        f"{record['target']}; {record['detail']})"
    )


def read(path: str) -> list[dict[str, Any]]:
    try:
        with open(path) as lines:
            return [json.loads(text) for text in lines if text.strip()]
    except FileNotFoundError:
        return []


def _item(record: dict[str, Any]) -> int:
    """Its number in issue 25 (a failed scenario's row first), for a stable sort."""
    number = record["metric"].split(".", 1)[0]
    return 0 if record.get("failed") or not number.isdigit() else int(number)


def table(records: list[dict[str, Any]]) -> str:
    """The "Targets" table: one row per record, a failed scenario's row included."""
    rows = ["| metric | measured | target | verdict | detail |", "|---|---|---|---|---|"]
    for r in sorted(records, key=_item):
        verdict = "**failed**" if r.get("failed") else "met" if r["met"] else "**missed**"
        detail = r["detail"].replace("|", "\\|")
        rows.append(f"| {r['metric']} | {r['measured']} | {r['target']} | {verdict} | {detail} |")
    return "\n".join(rows)
