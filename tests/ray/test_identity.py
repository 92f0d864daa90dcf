"""Issue #20 on a real local Ray: uploads keyed by content, runs by job + stage + row
(defects 2 and 3). One ``ray.init`` for the module, the emulator in a subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from gateway_async import RunRequest
from gateway_async.emulator._png import encode
from gateway_async.ray import map_runs, map_uploads
from tests.ray.conftest import EmulatorProcess, local_ray

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module", autouse=True)
def ray_runtime(emulator: EmulatorProcess) -> Iterator[None]:
    yield from local_ray(emulator)


def index(row: dict[str, Any]) -> RunRequest:
    return RunRequest(
        model="demo-image-embed", mode="index", scope="t-id", input={"image": row["media_ref"]}
    )


def test_touched_files_upload_and_run_nothing_again(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """Defect 2: ``os.utime`` on unchanged files made a rerun of map_uploads -> map_runs
    upload, execute and bill every row again (30 of 30); a rerun of a finished map_uploads
    sent every file's bytes again. Keyed by content, the rerun sends and executes nothing."""
    paths = []
    for n in range(30):
        paths.append(tmp_path / f"img{n}.png")
        paths[-1].write_bytes(encode(2, 2, bytes([n]) * 12))
    ds = ray.data.from_items([{"path": str(p)} for p in paths])

    def pipeline() -> list[dict[str, Any]]:
        uploaded = map_uploads(ds, job="t-utime", actors=1)
        return map_runs(uploaded, job="t-utime", to_request=index, actors=1).take_all()

    before = emulator.snapshot()
    first = pipeline()
    done = emulator.snapshot()
    assert len(done.executions_since(before)) == 30
    assert done.puts - before.puts == 30
    for path in paths:
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    again = pipeline()
    after = emulator.snapshot()
    assert after.executions_since(done) == {}  # nothing executed, nothing billed
    assert after.charged == done.charged
    assert after.puts == done.puts  # no byte sent again
    assert all(row["run_status"] == "succeeded" for row in again)
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in first)


def test_two_stages_of_one_job_with_one_key_column_never_collide(
    emulator: EmulatorProcess,
) -> None:
    """Defect 3: index then search with the same job and key_column: the search stage got
    ConflictError on every row (the key ignored the stage)."""
    ds = ray.data.from_items([{"id": n, "text": f"words {n}"} for n in range(8)])

    def stage(mode: str) -> Any:
        def request(row: dict[str, Any]) -> RunRequest:
            return RunRequest(
                model="demo-text-embed", mode=mode, scope="t-stages", input={"text": row["text"]}
            )

        return request

    before = emulator.snapshot()
    indexed = map_runs(ds, job="t-stages", to_request=stage("index"), key_column="id", actors=1)
    indexed = indexed.rename_columns({"run_id": "index_run_id", "run_status": "index_status"})
    searched = map_runs(
        indexed.select_columns(["id", "text", "index_status"]),
        job="t-stages",
        to_request=stage("search"),
        key_column="id",
        actors=1,
    ).take_all()
    assert [row["index_status"] for row in searched] == ["succeeded"] * 8
    assert [row["run_status"] for row in searched] == ["succeeded"] * 8, searched[0]
    executed = emulator.snapshot().executions_since(before)
    assert (len(executed), set(executed.values())) == (16, {1})


def test_a_null_key_column_value_is_an_error_row_naming_the_column(
    emulator: EmulatorProcess,
) -> None:
    """Defect 3: null key_column values all shared one key: one row ran, the others got
    409s that did not name the column."""
    rows = [{"ref": None, "n": n} for n in range(3)] + [{"ref": "r-3", "n": 3}]
    ds = ray.data.from_items(rows)

    def echo(row: dict[str, Any]) -> RunRequest:
        return RunRequest(model="demo-echo", input={"n": row["n"]})

    before = emulator.snapshot()
    out = sorted(
        map_runs(ds, job="t-null", to_request=echo, key_column="ref", actors=1).take_all(),
        key=lambda row: row["n"],
    )
    for row in out[:3]:
        assert (row["run_status"], row["run_error_type"]) == ("error", "InvalidRequestError")
        assert "'ref'" in row["run_error"]
        assert "null" in row["run_error"]
    assert out[3]["run_status"] == "succeeded"
    assert len(emulator.snapshot().executions_since(before)) == 1
