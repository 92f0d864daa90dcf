"""The options of one ingest, checked when ``ingest()`` is called, before any work starts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Required, TypeAlias, TypedDict

import attrs

from .._errors import InvalidRequestError
from .._identity import check_job
from .._journal import Journal
from .._schema import media_field
from .._validate import check_mode_scope
from ..models import MarketplaceModel, MediaRef
from ._tracing import TraceMode, check_trace
from ._types import IngestEvent

__all__ = [
    "IngestOptions",
    "InputFn",
    "ParamsArg",
    "Settings",
    "UnknownOptionError",
    "check_journal",
    "input_field_of",
    "settings_of",
]

InputFn: TypeAlias = Callable[[MediaRef, Any], Any]
ParamsArg: TypeAlias = Mapping[str, Any] | Callable[[Any], Mapping[str, Any] | None] | None
JournalArg: TypeAlias = str | os.PathLike[str] | Journal | None


class IngestOptions(TypedDict, total=False):
    """The keyword arguments of ``ingest()`` (see ``Settings`` for their defaults)."""

    model: Required[str]
    mode: str
    scope: str | None
    input: InputFn | None
    input_field: str | None
    params: ParamsArg
    upload_concurrency: int
    run_concurrency: int
    journal: JournalArg
    job: str | None
    max_spend: Decimal | None
    ordered: bool
    checksum: bool
    on_event: Callable[[IngestEvent], None] | None
    trace: TraceMode


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name}: must be a positive integer", field=name)


def check_journal(journal: object) -> None:
    """A journal path is opened only once the ingest runs, after its first requests: refuse
    what cannot be one now, before any byte is sent."""
    if journal is None or isinstance(journal, Journal):
        return
    if not isinstance(journal, str | os.PathLike):
        raise InvalidRequestError(
            f"journal: expected a file path or a Journal, got {type(journal).__name__}",
            field="journal",
        )
    path = os.fspath(journal)
    if not isinstance(path, str) or not path or os.path.isdir(path):
        raise InvalidRequestError(
            f"journal: {path!r:.80} is not a file path (a directory, or empty); pass the "
            "path of a file, e.g. 'ingest.db' (created if missing)",
            field="journal",
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InvalidRequestError(
            f"journal: the folder {folder!r:.80} does not exist; create it, or pass a path "
            "in a folder that exists",
            field="journal",
        )


def _decimal_fix(value: object) -> str:
    """Money is exact: say how to write the caller's own number as a Decimal."""
    shown = (
        str(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else "5"
    )
    return (
        f"max_spend: expected a Decimal, got {type(value).__name__} {value!r:.40}; pass "
        f'max_spend=Decimal("{shown:.40}") (from decimal import Decimal)'
    )


def _check_max_spend(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidRequestError(_decimal_fix(value), field="max_spend")
    if value < 0:
        raise InvalidRequestError(
            f"max_spend: {value} is negative; pass the credits this ingest may spend, e.g. "
            'max_spend=Decimal("5"), or None for no cap',
            field="max_spend",
        )


@attrs.frozen(kw_only=True)
class Settings:
    """What to ingest into, and how hard to push."""

    model: str
    mode: str = "index"
    scope: str | None = None
    input: InputFn | None = None
    input_field: str | None = None
    params: ParamsArg = None
    upload_concurrency: int = 8
    run_concurrency: int = 32
    journal: JournalArg = None
    job: str | None = None
    max_spend: Decimal | None = None
    ordered: bool = False
    checksum: bool = True
    on_event: Callable[[IngestEvent], None] | None = None
    trace: TraceMode = "item"

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidRequestError("model: pass a model slug", field="model")
        _positive("upload_concurrency", self.upload_concurrency)
        _positive("run_concurrency", self.run_concurrency)
        if self.input is not None and self.input_field is not None:
            raise InvalidRequestError("pass input= or input_field=, not both", field="input")
        if self.input is not None and not callable(self.input):
            raise InvalidRequestError("input: expected callable(media_ref, source)", field="input")
        if self.params is not None and not (
            callable(self.params) or isinstance(self.params, Mapping)
        ):
            raise InvalidRequestError("params: expected a dict or callable(source)", field="params")
        if self.on_event is not None and not callable(self.on_event):
            raise InvalidRequestError(
                "on_event: expected callable(IngestEvent) or None", field="on_event"
            )
        check_journal(self.journal)
        check_trace(self.trace)
        if self.job is not None:
            check_job(self.job)
        if not self.checksum and (self.job is not None or self.journal is not None):
            raise InvalidRequestError(
                "checksum: a job or a journal names each upload by its content, which needs "
                "its hash; drop checksum=False",
                field="checksum",
            )
        _check_max_spend(self.max_spend)
        check_mode_scope(self.mode, self.scope)  # else every run is refused after its upload

    @property
    def stage(self) -> str:
        """What the journal calls this ingest's work on each source."""
        return f"{self.model}\0{self.mode}\0{self.scope or ''}"

    @property
    def window(self) -> int:
        """Sources in flight at most: bounds memory, and the reorder buffer of ``ordered``."""
        return 2 * (self.upload_concurrency + self.run_concurrency)

    def input_for(self, field: str | None, media: MediaRef, source: Any) -> Any:
        if self.input is not None:
            return self.input(media, source)
        return {field: media.media_ref}

    def params_for(self, source: Any) -> Mapping[str, Any] | None:
        if callable(self.params):
            return self.params(source)
        return self.params


class UnknownOptionError(InvalidRequestError, TypeError):
    """An option ``ingest()`` does not take (a typo): also a ``TypeError``, as Python raises
    for an unexpected keyword argument, so code catching either keeps working."""


def settings_of(options: Mapping[str, Any]) -> Settings:
    """The ``Settings`` of ``ingest(**options)``: an unknown or missing option is named with
    the accepted ones, not as a ``TypeError`` about this private class's ``__init__``."""
    accepted = attrs.fields_dict(Settings)
    for name in sorted(set(options) - set(accepted)):
        raise UnknownOptionError(
            f"{name}: ingest() takes no such option; it takes {', '.join(accepted)}",
            field=str(name),
        )
    if "model" not in options:
        raise InvalidRequestError(
            "model: required: pass the model slug, e.g. model='demo-image-embed'", field="model"
        )
    return Settings(**options)


def input_field_of(settings: Settings, model: MarketplaceModel) -> str | None:
    """The input field that takes the media_ref (see ``_schema.media_field``); None when
    ``input=`` builds the whole input. Refused here, before any upload is paid for."""
    if settings.input is not None:
        return None
    return media_field(model.input_schema, model.slug, settings.input_field)
