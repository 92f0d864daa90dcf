"""``gw.runs``: execute a published model, one run or a bounded, ordered batch."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .._batch import check_many, run_batch
from .._config import NOT_GIVEN, NotGiven
from .._convert import structure
from .._errors import AuthenticationError, GatewayError, InsufficientFundsError, InvalidRequestError
from .._schema import check_input
from .._telemetry import Attributes
from .._transport import Transport
from ..models import Run, RunRequest
from ._base import CallTimeout, Resource, traced

if TYPE_CHECKING:
    from .marketplace import Marketplace

__all__ = ["DOOMING_ERRORS", "Runs"]

# Errors that every later request of the batch would meet too; 403 is not one of them,
# since a key may be refused one model and allowed another.
DOOMING_ERRORS: tuple[type[GatewayError], ...] = (AuthenticationError, InsufficientFundsError)


def _describe(request: RunRequest, *_: Any, **__: Any) -> Attributes:
    """A run's span attributes before it is sent: never its input, params or options."""
    described = {"gateway.model": str(request.model), "gateway.mode": str(request.mode)}
    if request.scope is not None:
        described["gateway.scope"] = str(request.scope)
    return described


def _outcome(run: Run) -> Attributes:
    """A finished run's span attributes (and the runs and credits metrics): never output."""
    return {
        "gateway.model": run.model,
        "gateway.run.id": run.id,
        "gateway.run.status": run.status,
        "gateway.credits": float(run.usage.credits),
    }


class Runs(Resource):
    """Create runs. Every POST carries an Idempotency-Key, so retries never run twice."""

    __slots__ = ("_marketplace",)

    def __init__(self, transport: Transport, marketplace: Marketplace | None = None) -> None:
        super().__init__(transport)
        self._marketplace = marketplace

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

    @traced("gateway.runs.create", _describe, _outcome)
    async def send(
        self,
        request: RunRequest,
        *,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> Run:
        """Send a prepared RunRequest."""
        if not isinstance(request, RunRequest):
            raise InvalidRequestError(
                f"request: expected a RunRequest, got {type(request).__name__}; pass a "
                "RunRequest (RunRequest(model=..., input=...) or RunRequest.from_dict(body))",
                field="request",
            )
        if self._marketplace is not None and type(request.input) is not dict:
            await self._check_input(request)  # not on the usual path: one frame less
        reply = await self._transport.request(
            "POST",
            "/api/runs",
            body=request.to_body(),
            idempotency_key=request.idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
        )
        run = structure(reply.data, Run, request_id=reply.request_id)
        return attrs.evolve(run, replayed=True) if reply.replayed else run

    async def _check_input(self, request: RunRequest) -> None:
        """An input that is not an object is checked against the model's ``input_schema``
        (fetched once per client) before it is sent; objects go as they are, checked by the
        Gateway (a 422 is never charged), so the usual run costs no extra request."""
        if not isinstance(request.input, Mapping):
            assert self._marketplace is not None
            model = await self._marketplace.cached_model(str(request.model))
            check_input(request.input, model.input_schema, model.slug)

    @traced("gateway.runs.create_many")
    async def create_many(
        self,
        requests: Iterable[RunRequest],
        *,
        concurrency: int = 32,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> list[Run | GatewayError]:
        """Send many runs, at most ``concurrency`` at once; results in input order.

        Each item's result is its Run or the GatewayError it met (whatever it raised: runs
        already executed, and charged, are never lost); one failure never cancels the rest.
        After a 401 or 402 no new request starts, and the items left are reported as
        NotAttemptedError naming that cause. ``requests`` is consumed lazily; if it raises,
        that error is the result at its position and nothing after it is sent.
        """

        check_many(requests, "requests", "gw.runs.create() for one", "RunRequests")

        def send(_: int, request: RunRequest) -> Awaitable[Run]:
            if not isinstance(request, RunRequest):
                raise InvalidRequestError(
                    f"requests: expected RunRequest items, got {type(request).__name__}",
                    field="requests",
                )
            return self.send(request, timeout=timeout, max_retries=max_retries)

        return await run_batch(requests, send, concurrency=concurrency, dooming=DOOMING_ERRORS)
