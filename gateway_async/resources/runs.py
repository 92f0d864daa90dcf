"""``gw.runs``: execute a published model, one run or a bounded, ordered batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from .._config import NOT_GIVEN, NotGiven
from .._convert import structure
from .._errors import (
    AuthenticationError,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    NotAttemptedError,
)
from ..models import Run, RunRequest
from ._base import CallTimeout, Resource

__all__ = ["DOOMING_ERRORS", "Runs"]

# Errors that every later request of the batch would meet too; 403 is not one of them,
# since a key may be refused one model and allowed another.
DOOMING_ERRORS: tuple[type[GatewayError], ...] = (AuthenticationError, InsufficientFundsError)


class Runs(Resource):
    """Create runs. Every POST carries an Idempotency-Key, so retries never run twice."""

    __slots__ = ()

    async def create(
        self,
        *,
        model: str,
        input: Any,
        mode: str = "execute",
        scope: str | None = None,
        params: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> Run:
        """Run ``model`` on ``input`` and return the finished Run (runs are synchronous)."""
        request = RunRequest(
            model=model,
            input=input,
            mode=mode,
            scope=scope,
            params=params,
            options=options,
            idempotency_key=idempotency_key,
        )
        return await self.send(request, timeout=timeout, max_retries=max_retries)

    async def send(
        self,
        request: RunRequest,
        *,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> Run:
        """Send a prepared RunRequest."""
        reply = await self._transport.request(
            "POST",
            "/api/runs",
            body=request.to_body(),
            idempotency_key=request.idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
        )
        return structure(reply.data, Run, request_id=reply.request_id)

    async def create_many(
        self,
        requests: Iterable[RunRequest],
        *,
        concurrency: int = 32,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> list[Run | GatewayError]:
        """Send many runs, at most ``concurrency`` at once; results in input order.

        Each item's result is its Run or the GatewayError it met; one failure never cancels
        the rest. After a 401 or 402 no new request starts, and the items left are reported
        as NotAttemptedError naming that cause. ``requests`` is consumed lazily.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(
                "concurrency: must be a positive integer", field="concurrency"
            )
        results: dict[int, Run | GatewayError] = {}
        doom: list[GatewayError] = []
        items = enumerate(requests)

        async def worker() -> None:
            for index, request in items:
                if doom or not isinstance(request, RunRequest):
                    results[index] = _not_sent(request, doom)
                    continue
                try:
                    results[index] = await self.send(
                        request, timeout=timeout, max_retries=max_retries
                    )
                except DOOMING_ERRORS as exc:
                    doom.append(exc)
                    results[index] = exc
                except GatewayError as exc:
                    results[index] = exc

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
        return [results[index] for index in range(len(results))]


def _not_sent(request: object, doom: list[GatewayError]) -> GatewayError:
    """The error of a batch item that is never sent: the batch is doomed, or it is no request."""
    if doom:
        return NotAttemptedError(
            f"not sent: an earlier item failed with {type(doom[0]).__name__} ({doom[0]}), "
            "which every later item would meet too",
            reason=doom[0],
        )
    return InvalidRequestError(
        f"requests: expected RunRequest items, got {type(request).__name__}", field="requests"
    )
