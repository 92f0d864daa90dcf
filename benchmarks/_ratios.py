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


def table(records: list[dict[str, Any]]) -> str:
    """The "Targets" table: one row per record, a failed scenario's row included."""
    rows = ["| metric | measured | target | verdict | detail |", "|---|---|---|---|---|"]
    for r in records:
        verdict = "**failed**" if r.get("failed") else "met" if r["met"] else "**missed**"
        rows.append(
            f"| {r['metric']} | {r['measured']} | {r['target']} | {verdict} | {r['detail']} |"
        )
    return "\n".join(rows)
