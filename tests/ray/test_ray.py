"""``gateway_async.ray`` on a real local Ray (2 CPUs) against the emulator in a subprocess.

One ``ray.init`` for the module; every test uses its own job name, so the emulator's
counters are compared as differences. Exactly-once is checked where the emulator counts
it: executions per Idempotency-Key since the test began.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.cloudpickle
from ray.data import ActorPoolStrategy

from gateway_async import RunRequest
from gateway_async.ray import map_runs, map_uploads
from tests.ray._faults import ExitAfterAnswers, WaitForKill
from tests.ray.conftest import EmulatorProcess, KillSwitch, Snapshot, local_ray

pytestmark = pytest.mark.timeout(150)

RUN_COLUMNS = ["run_id", "run_status", "run_output", "run_credits", "run_error_type", "run_error"]
UPLOAD_COLUMNS = ["media_ref", "media_size", "media_sha256", "upload_error_type", "upload_error"]


@pytest.fixture(scope="module", autouse=True)
def ray_runtime(emulator: EmulatorProcess) -> Iterator[None]:
    yield from local_ray(emulator)


def echo(row: dict[str, Any]) -> RunRequest:
    return RunRequest(model="demo-echo", input={"i": row["id"]})


def assert_once_each(emulator: EmulatorProcess, before: Snapshot, rows: int) -> None:
    """The emulator executed exactly ``rows`` runs since ``before``, one per key."""
    executed = emulator.snapshot().executions_since(before)
    assert len(executed) == rows
    assert set(executed.values()) == {1}


def test_2000_rows_run_once_each(emulator: EmulatorProcess) -> None:
    """Every row runs exactly once and gets its result columns, in the row's order."""
    assert "GATEWAY_API_KEY" not in os.environ  # only the workers have credentials
    before = emulator.snapshot()
    out = map_runs(ray.data.range(2000), job="t-2000", to_request=echo, actors=2)
    rows = out.take_all()
    assert_once_each(emulator, before, 2000)
    assert sorted(row["id"] for row in rows) == list(range(2000))
    assert all(json.loads(row["run_output"]) == {"i": row["id"]} for row in rows)
    assert {(row["run_status"], row["run_credits"]) for row in rows} == {("succeeded", "0.0010")}
    assert out.columns() == ["id", *RUN_COLUMNS]


def test_result_and_error_rows(emulator: EmulatorProcess) -> None:
    """Failed runs, refused requests and varying outputs are rows, in one Arrow schema."""
    requests = [
        {"model": "demo-echo", "input": {"text": "a", "nested": [1, {"x": None}]}},
        {"model": "demo-echo", "input": {"n": 2}},
        {"model": "demo-echo", "input": {"n": 3}, "params": {"fail": "boom"}},
        {"model": "no-such-model", "input": {"n": 4}},
        {"model": "demo-text-embed", "mode": "index", "scope": "bad scope!", "input": {}},
    ]
    ds = ray.data.from_items([{"n": n, "body": json.dumps(r)} for n, r in enumerate(requests)])

    def to_request(row: dict[str, Any]) -> RunRequest:
        return RunRequest.from_dict(json.loads(row["body"]))

    rows = map_runs(ds, job="t-errors", to_request=to_request, actors=1).take_all()
    by_n = {row["n"]: row for row in rows}
    assert json.loads(by_n[0]["run_output"]) == requests[0]["input"]
    assert by_n[1]["run_status"] == "succeeded"
    assert (by_n[2]["run_status"], by_n[2]["run_error_type"]) == ("failed", "model_error")
    assert by_n[2]["run_error"] == "boom"
    assert (by_n[3]["run_status"], by_n[3]["run_error_type"]) == ("error", "NotFoundError")
    assert (by_n[4]["run_status"], by_n[4]["run_error_type"]) == ("error", "InvalidRequestError")
    assert "scope" in by_n[4]["run_error"]
    assert (by_n[4]["run_id"], by_n[4]["run_output"]) == (None, None)


def test_uploads_then_runs(emulator: EmulatorProcess, tmp_path: Path) -> None:
    """Files upload once each, their media_refs index, a missing file is an error row
    whose run is not attempted, and uploading again in the same job creates nothing."""
    paths = []
    for n in range(12):
        path = tmp_path / f"img{n}.bin"
        path.write_bytes(os.urandom(256) * (n + 1))
        paths.append(str(path))
    ds = ray.data.from_items([{"path": p} for p in [*paths, str(tmp_path / "missing.png")]])

    def index(row: dict[str, Any]) -> RunRequest:
        return RunRequest(
            model="demo-image-embed", mode="index", scope="t-up", input={"image": row["media_ref"]}
        )

    before = emulator.snapshot()
    uploaded = map_uploads(ds, job="t-up", actors=2)
    ran = map_runs(uploaded, job="t-up", to_request=index, actors=2).take_all()
    rows = {row["path"]: row for row in ran}
    first = emulator.snapshot()
    assert (first.uploads_initiated - before.uploads_initiated) == 12
    assert (first.uploads_completed - before.uploads_completed) == 12
    assert_once_each(emulator, before, 12)
    for path in paths:
        row = rows[path]
        data = Path(path).read_bytes()
        assert (row["media_size"], row["media_sha256"]) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        assert row["media_ref"].startswith("mref_")
        assert row["run_status"] == "succeeded"
    missing = rows[str(tmp_path / "missing.png")]
    assert (missing["media_ref"], missing["upload_error_type"]) == (None, "InvalidRequestError")
    assert (missing["run_status"], missing["run_error_type"]) == ("error", "NotAttemptedError")
    assert list(missing) == ["path", *UPLOAD_COLUMNS, *RUN_COLUMNS]

    again = {row["path"]: row["media_ref"] for row in uploaded.take_all()}
    after = emulator.snapshot()
    assert after.uploads_initiated == first.uploads_initiated
    assert after.uploads_completed == first.uploads_completed
    assert again == {path: row["media_ref"] for path, row in rows.items()}
    assert after.credential_leaks == 0


def test_error_that_dooms_every_row_stops_the_job(emulator: EmulatorProcess) -> None:
    """A 401 is not an error row: the job fails with the AuthenticationError."""
    before = emulator.snapshot()
    out = map_runs(ray.data.range(20), job="t-401", to_request=echo, actors=1, api_key="gk_bad")
    with pytest.raises(ray.exceptions.RayTaskError, match="AuthenticationError: 401") as info:
        out.take_all()
    assert "gk_bad" not in str(info.value)
    assert emulator.snapshot().executions == before.executions


def test_credentials_from_the_environment_stay_out_of_the_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key in the driver's environment is never read there, so never pickled."""
    monkeypatch.setenv("GATEWAY_API_KEY", "gk_driver_secret_123")
    out = map_runs(ray.data.range(3), job="t-plan", to_request=echo)
    assert b"gk_driver_secret_123" not in ray.cloudpickle.dumps(out)


def test_limit_at_least_a_batch_is_pushed_ahead_of_the_runs(emulator: EmulatorProcess) -> None:
    """limit(n) with n >= batch_size runs exactly n rows (Ray moves the limit upstream)."""
    before = emulator.snapshot()
    out = map_runs(ray.data.range(1000), job="t-limit", to_request=echo, actors=2)
    assert len(out.limit(300).take_all()) == 300
    assert_once_each(emulator, before, 300)


def run_with(udf: type, rows: int, job: str, **kwargs: Any) -> list[dict[str, Any]]:
    """``ds.map_batches`` with a GatewayRunner subclass, as a user of the class would."""
    return (
        ray.data.range(rows, override_num_blocks=6)
        .map_batches(
            udf,
            fn_constructor_kwargs={"job": job, "to_request": echo, **kwargs},
            compute=ActorPoolStrategy(size=2),
            num_cpus=0.25,
            batch_size=50,
            batch_format="pyarrow",
        )
        .take_all()
    )


def assert_exactly_once_after_death(
    emulator: EmulatorProcess, before: Snapshot, rows: list[dict[str, Any]], n: int, job: str
) -> None:
    assert sorted(row["id"] for row in rows) == list(range(n))
    assert {row["run_status"] for row in rows} == {"succeeded"}
    assert_once_each(emulator, before, n)
    rerun = emulator.snapshot()
    again = map_runs(ray.data.range(n), job=job, to_request=echo, actors=2).take_all()
    assert emulator.snapshot().executions == rerun.executions  # the same job executes nothing
    assert {row["run_id"] for row in again} == {row["run_id"] for row in rows}


def test_actor_exiting_after_the_gateway_answered(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    """os._exit mid-job: Ray restarts the actor and re-runs its batches, which replay."""
    before = emulator.snapshot()
    rows = run_with(ExitAfterAnswers, 300, "t-exit", marker=str(tmp_path / "died"))
    assert (tmp_path / "died").exists()
    assert_exactly_once_after_death(emulator, before, rows, 300, "t-exit")


def test_worker_process_sigkilled_mid_batch(emulator: EmulatorProcess, tmp_path: Path) -> None:
    """SIGKILL of the actor's worker process while it holds answered rows."""
    switch = KillSwitch(lambda pid: os.kill(pid, signal.SIGKILL))
    try:
        before = emulator.snapshot()
        rows = run_with(WaitForKill, 300, "t-kill", marker=str(tmp_path / "m"), port=switch.port)
        assert switch.fired.is_set()
    finally:
        switch.close()
    assert_exactly_once_after_death(emulator, before, rows, 300, "t-kill")


# -- job-wide controls -------------------------------------------------------------------


def kinds(rows: list[dict[str, Any]], column: str = "run_error_type") -> Counter[str | None]:
    return Counter(row[column] for row in rows)


def test_one_spend_cap_across_two_actors(emulator: EmulatorProcess) -> None:
    """max_spend holds for the job as a whole: the Gateway charged no more than the cap,
    the rows past it are BudgetExhaustedError rows, the job completes and every paid row
    is written."""
    before = emulator.snapshot()
    cap = Decimal("0.1000")  # 100 runs of demo-echo (0.0010)
    out = map_runs(ray.data.range(400), job="t-cap", to_request=echo, actors=2, max_spend=cap)
    rows = out.take_all()
    charged = emulator.snapshot().charged - before.charged
    assert sorted(row["id"] for row in rows) == list(range(400))
    paid = [row for row in rows if row["run_status"] == "succeeded"]
    assert kinds(rows) == {None: len(paid), "BudgetExhaustedError": 400 - len(paid)}
    assert Decimal("0.0010") * len(paid) == charged <= cap
    assert len(paid) >= 90  # the cap is used, not merely respected


def test_previews_are_bounded_by_the_cap(emulator: EmulatorProcess) -> None:
    """take(5) runs whole batches (Ray cannot push a limit below a batch ahead of the
    map: 375 runs of 1,000 were billed before): under max_spend it charges at most the cap."""
    before = emulator.snapshot()
    cap = Decimal("0.0200")
    out = map_runs(ray.data.range(1000), job="t-preview", to_request=echo, actors=1, max_spend=cap)
    assert len(out.take(5)) == 5
    charged = emulator.snapshot().charged - before.charged
    assert Decimal(0) < charged <= cap


def run_on_own_emulator(
    rows: int, settings: dict[str, Any], **kwargs: Any
) -> tuple[list[dict[str, Any]], Snapshot]:
    """map_runs over ``rows`` rows against an emulator of its own (``settings``: its
    balance, its rate limit); the rows and the emulator's counters after the job."""
    gateway = EmulatorProcess(**settings)
    try:
        out = map_runs(
            ray.data.range(rows, override_num_blocks=4),
            api_key=gateway.api_key,
            base_url=gateway.base_url,
            **kwargs,
        )
        return out.take_all(), gateway.snapshot()
    finally:
        gateway.close()


def fussy(row: dict[str, Any]) -> RunRequest:
    if row["id"] == 7:
        raise KeyError("image")
    return echo(row)


def test_a_402_mid_job_and_a_raising_to_request_are_rows() -> None:
    """The wallet runs out mid-job and one row's to_request raises: the job completes,
    with (min, max) actors; the paid rows are written, the rest are error rows."""
    rows, after = run_on_own_emulator(
        300, {"balance": "0.0500"}, job="t-402-job", to_request=fussy, actors=(1, 2)
    )
    assert sorted(row["id"] for row in rows) == list(range(300))
    counted = kinds(rows)
    assert counted[None] == after.executions == 50  # the wallet held 50 runs
    assert counted["KeyError"] == 1
    assert counted["InsufficientFundsError"] >= 1
    assert counted["InsufficientFundsError"] + counted["NotAttemptedError"] == 249
    by_id = {row["id"]: row for row in rows}
    assert (by_id[7]["run_error"], by_id[7]["run_output"]) == ("'image'", None)


def test_requests_per_second_paces_the_job_as_a_whole() -> None:
    """Two actors under requests_per_second=40 against a Gateway that allows 60 per second
    (burst 5): the Gateway never had to refuse a call (it counts its 429s)."""
    settings = {"rate": 60, "burst": 5}
    rows, after = run_on_own_emulator(
        120, settings, job="t-pace", to_request=echo, actors=2, requests_per_second=40
    )
    assert kinds(rows, "run_status") == {"succeeded": 120}
    assert (after.rate_limited, after.executions) == (0, 120)


def test_an_unreachable_gateway_stops_the_job_within_a_minute() -> None:
    """Before: the job "succeeded" after 12 s with every row an APIConnectionError row."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    started = time.monotonic()
    out = map_runs(
        ray.data.range(600),
        job="t-down",
        to_request=echo,
        actors=1,
        base_url=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(ray.exceptions.RayTaskError, match="could not be reached"):
        out.take_all()
    assert time.monotonic() - started < 60


def poison(row: dict[str, Any]) -> RunRequest:
    if row["id"] == 3:
        os._exit(1)
    return echo(row)


def test_a_poison_row_fails_the_job_with_max_restarts_0(emulator: EmulatorProcess) -> None:
    """ray_remote_args reach Ray: with max_restarts=0 the actor that a row kills is not
    restarted for ever, the job fails."""
    out = map_runs(
        ray.data.range(20),
        job="t-poison",
        to_request=poison,
        actors=1,
        ray_remote_args={"max_restarts": 0},
    )
    with pytest.raises(ray.exceptions.RayError):
        out.take_all()


def exited_within(pids: Iterable[int], timeout: float) -> set[int]:
    """The processes of ``pids`` (not our children) that have exited, or exit within
    ``timeout`` seconds: a pidfd turns readable when its process ends."""
    exited: set[int] = set()
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            exited.add(pid)
    deadline = time.monotonic() + timeout
    try:
        while fds and (left := deadline - time.monotonic()) > 0:
            ready = set(select.select(list(fds.values()), [], [], left)[0])
            for pid, fd in list(fds.items()):
                if fd in ready:
                    exited.add(pid)
                    os.close(fds.pop(pid))
    finally:
        for fd in fds.values():
            os.close(fd)
    return exited


def test_released_actors_closed_their_sessions() -> None:
    """Last in the module: every map actor above that Ray released and whose process has
    exited did so without aiohttp's "Unclosed client session" in its log (its Gateway was
    closed on its loop). Ray may keep a worker process alive for a while after its actor
    is gone; such a worker has nothing to report yet, so only exited ones are judged."""
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    actors = {
        int(err.stem.rsplit("-", 1)[1]): err
        for err in logs.glob("worker-*.err")
        if "MapWorker(" in err.read_text()
    }
    assert actors
    exited = exited_within(actors, 60)
    assert exited, "no released map actor's process exited within 60 s"
    leaks = [
        actors[pid].name for pid in exited if "Unclosed client session" in actors[pid].read_text()
    ]
    assert leaks == []
