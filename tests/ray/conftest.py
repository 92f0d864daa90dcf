"""Shared setup of the Ray tests: the emulator in a subprocess, and what Ray workers need.

Ray workers are separate processes: they reach the emulator over loopback, get the
credentials from ``runtime_env`` (the driver's own environment has none, as on a
cluster) and import the fault-injecting classes of ``tests.ray._faults`` through
``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Ray's own warnings (deprecated settings of its own, advice on pool sizes), by module. A mark,
# since `pytest -W error` on the command line would override the same filter in pyproject.
RAY_WARNINGS = pytest.mark.filterwarnings(r"ignore::Warning:ray\.")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(RAY_WARNINGS)


@attrs.frozen
class Snapshot:
    """The emulator's counters at one moment."""

    executions: int
    by_key: Counter[str]
    replays: int
    uploads_initiated: int
    uploads_completed: int
    puts: int
    credential_leaks: int
    charged: Decimal
    rate_limited: int

    def executions_since(self, before: Snapshot) -> Counter[str]:
        """Executions per Idempotency-Key since ``before``."""
        return self.by_key - before.by_key


class EmulatorProcess:
    """``python -m tests.ray._emulator_child``: the Gateway emulator, and its counters."""

    def __init__(self, **settings: object) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tests.ray._emulator_child", json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self._child.stdout is not None
        hello = json.loads(self._child.stdout.readline())
        self.base_url: str = hello["base_url"]
        self.api_key: str = hello["api_key"]

    def snapshot(self) -> Snapshot:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write("stats\n")
        self._child.stdin.flush()
        raw: dict[str, Any] = json.loads(self._child.stdout.readline())
        raw["by_key"] = Counter(raw["by_key"])
        raw["charged"] = Decimal(raw["charged"])
        return Snapshot(**raw)

    def env(self) -> dict[str, str]:
        """What a worker needs: credentials and the repository on its import path."""
        return {
            "GATEWAY_API_KEY": self.api_key,
            "GATEWAY_BASE_URL": self.base_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            # Shown in the workers' logs, where test_ray checks that no session leaked.
            "PYTHONWARNINGS": "default::ResourceWarning",
        }

    def close(self) -> None:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.close()
        self._child.wait(timeout=30)
        self._child.stdout.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess()
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(autouse=True)
def _no_driver_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver builds every plan without credentials: only the workers have them."""
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)
    monkeypatch.delenv("GATEWAY_BASE_URL", raising=False)


class KillSwitch:
    """A loopback listener: when a doomed actor checks in with its pid, run ``action(pid)``
    (SIGKILL it, remove its node); the actor waits for that instead of a sleep."""

    def __init__(self, action: Callable[[int], object]) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.fired = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(action,), daemon=True)
        self._thread.start()

    def _serve(self, action: Callable[[int], object]) -> None:
        conn, _ = self._sock.accept()
        with conn, conn.makefile() as lines:
            line = lines.readline()
            if line.strip():
                action(int(line))
                self.fired.set()

    def close(self) -> None:
        if self._thread.is_alive() and not self.fired.is_set():
            socket.create_connection(("127.0.0.1", self.port)).close()  # wake accept()
        self._thread.join(timeout=30)
        self._sock.close()


def local_ray(emulator: EmulatorProcess) -> Iterator[None]:
    """One local Ray for a test module (2 CPUs, the emulator's address in every worker's
    environment), shut down after it: ``yield from local_ray(emulator)`` in a module fixture."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": emulator.env()},
    )
    try:
        yield
    finally:
        ray.shutdown()
