"""A simulated two-node Ray cluster (``ray.cluster_utils.Cluster``): the node running an
actor is removed mid-job, after the Gateway answered one of its batches. Ray restarts
the actor on the other node and re-runs what was lost; every row still executes once, and
running the same job again executes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.data import ActorPoolStrategy

from tests.ray._faults import WaitForKill
from tests.ray.conftest import EmulatorProcess, KillSwitch
from tests.ray.test_ray import assert_exactly_once_after_death, echo

pytestmark = pytest.mark.timeout(240)
ROWS = 400


@pytest.fixture(scope="module")
def cluster(emulator: EmulatorProcess) -> Iterator[tuple[Cluster, Any]]:
    # Two CPUs per node: 0.25-CPU actors on both nodes must still leave a whole CPU free
    # on one of them for the read tasks (1 CPU each), or nothing upstream can run.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, runtime_env={"env_vars": emulator.env()}, log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_node_removed_mid_job_still_runs_each_row_once(
    emulator: EmulatorProcess, cluster: tuple[Cluster, Any], tmp_path: Path
) -> None:
    """Remove the worker node while its actor holds answered rows: exactly once still."""
    nodes, worker = cluster
    switch = KillSwitch(lambda _pid: nodes.remove_node(worker, allow_graceful=False))
    before = emulator.snapshot()
    try:
        rows = (
            ray.data.range(ROWS, override_num_blocks=8)
            .map_batches(
                WaitForKill,
                fn_constructor_kwargs={
                    "job": "t-cluster",
                    "to_request": echo,
                    "marker": str(tmp_path / "m"),
                    "port": switch.port,
                    "node_id": worker.node_id,
                },
                compute=ActorPoolStrategy(size=2),
                num_cpus=0.25,
                batch_size=50,
                batch_format="pyarrow",
            )
            .take_all()
        )
        assert switch.fired.is_set()
    finally:
        switch.close()
    # One execution per row, and the same job run again (on the node left) executes nothing.
    assert_exactly_once_after_death(emulator, before, rows, ROWS, "t-cluster")
