"""The demo model catalogue, and how callers register extra models.

Each model runs on one engine: ``echo`` (output = input), ``text`` (embeddings of
``input.text``) or ``image`` (embeddings of the media named by ``input.image``). Media
fields are marked in ``input_schema`` with ``"format": "media_ref"``. A model may carry
``allowed_keys``: only those credentials may run it (others get ``403``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ._errors import invalid
from ._schema import MEDIA_REF_FORMAT
from ._wire import parse_credits

ENGINES = ("echo", "text", "image")
VECTOR_MODES = ("index", "search")
DEFAULT_PRICE = "0.0010"
DEFAULT_RELEASE = "2026-11-01"
CURSOR_PATTERN = "^c[0-9]{1,9}$"
_CURSOR = re.compile(CURSOR_PATTERN.strip("^$"), re.ASCII)

_EMBED_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        "metadata": {"type": "object"},
    },
    "additionalProperties": False,
}
_ENGINE_INPUT: dict[str, dict[str, Any]] = {
    "echo": {"type": "object"},
    "text": {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1}},
        "required": ["text"],
        "additionalProperties": False,
    },
    "image": {
        "type": "object",
        "properties": {"image": {"type": "string", "format": MEDIA_REF_FORMAT}},
        "required": ["image"],
        "additionalProperties": False,
    },
}
_ENGINE_PARAMS: dict[str, dict[str, Any]] = {
    "echo": {"type": "object", "properties": {"fail": {"type": "string"}}},
    "text": _EMBED_PARAMS,
    "image": _EMBED_PARAMS,
}


@dataclass(frozen=True)
class ModelSpec:
    """One marketplace model: its public fields plus engine and access list."""

    slug: str
    name: str
    description: str
    modes: tuple[str, ...]
    vector_modes: tuple[str, ...]
    input_schema: Mapping[str, Any]
    params_schema: Mapping[str, Any]
    price: Decimal
    release: str
    engine: str
    allowed_keys: frozenset[str] | None = None

    def public(self) -> dict[str, Any]:
        """The contract's ``Model`` object."""
        return {
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "modes": list(self.modes),
            "vector_modes": list(self.vector_modes),
            "input_schema": self.input_schema,
            "params_schema": self.params_schema,
            "price_per_run": str(self.price),
            "release": self.release,
        }

    def allows(self, credential: str) -> bool:
        """Whether ``credential`` (an API key or browser token) may run this model."""
        return self.allowed_keys is None or credential in self.allowed_keys

    def matches(self, query: str) -> bool:
        """Case-insensitive substring match on slug, name or description."""
        needle = query.lower()
        return any(needle in text.lower() for text in (self.slug, self.name, self.description))


def model_from_dict(raw: Mapping[str, Any]) -> ModelSpec:
    """Build a model from a plain dict; only ``slug`` is required (ValueError otherwise)."""
    slug = raw.get("slug")
    engine = raw.get("engine", "echo")
    if not isinstance(slug, str) or not slug or engine not in ENGINES:
        raise ValueError(f"a model needs a non-empty slug and an engine in {ENGINES}: {raw!r}")
    default_modes = ("execute",) if engine == "echo" else ("execute", *VECTOR_MODES)
    modes = tuple(raw.get("modes", default_modes))
    price = parse_credits(str(raw.get("price_per_run", DEFAULT_PRICE)), f"model {slug!r}'s price")
    allowed = raw.get("allowed_keys")
    return ModelSpec(
        slug=slug,
        name=str(raw.get("name", slug)),
        description=str(raw.get("description", "")),
        modes=modes,
        vector_modes=tuple(raw.get("vector_modes", [m for m in modes if m in VECTOR_MODES])),
        input_schema=raw.get("input_schema", _ENGINE_INPUT[engine]),
        params_schema=raw.get("params_schema", _ENGINE_PARAMS[engine]),
        price=price,
        release=str(raw.get("release", DEFAULT_RELEASE)),
        engine=engine,
        allowed_keys=None if allowed is None else frozenset(allowed),
    )


DEMO_MODELS: tuple[Mapping[str, Any], ...] = (
    {
        "slug": "demo-echo",
        "name": "Demo echo",
        "description": "Returns its input unchanged as the run output. params.fail makes it fail.",
        "engine": "echo",
    },
    {
        "slug": "demo-text-embed",
        "name": "Demo text embedding",
        "description": "Embeds input.text with hashed character 3-grams; index and search text.",
        "engine": "text",
    },
    {
        "slug": "demo-image-embed",
        "name": "Demo image embedding",
        "description": "Embeds an uploaded image (input.image, a media_ref) from its pixels "
        "(PNG) or bytes; index and search images.",
        "engine": "image",
    },
)


class Catalogue:
    """The marketplace: demo models first, then extras; looked up by slug."""

    def __init__(self, extra: Iterable[Mapping[str, Any]] = ()) -> None:
        self._models: dict[str, ModelSpec] = {}
        for raw in (*DEMO_MODELS, *extra):
            model = model_from_dict(raw)
            if model.slug in self._models:
                raise ValueError(f"duplicate model slug {model.slug!r}")
            self._models[model.slug] = model

    def models(self) -> tuple[ModelSpec, ...]:
        """Every model, in marketplace order."""
        return tuple(self._models.values())

    def get(self, slug: str) -> ModelSpec | None:
        """The model with this slug, if any."""
        return self._models.get(slug)

    def page(self, query: str, offset: int, limit: int) -> tuple[Sequence[ModelSpec], int | None]:
        """One page of matching models and the next offset (None on the last page)."""
        found = [m for m in self._models.values() if not query or m.matches(query)]
        end = offset + limit
        return found[offset:end], (end if end < len(found) else None)


def encode_cursor(offset: int) -> str:
    """An opaque pagination cursor (``CURSOR_PATTERN`` in the OpenAPI document)."""
    return f"c{offset}"


def decode_cursor(cursor: str) -> int:
    """The offset inside a cursor from :func:`encode_cursor`; 422 for anything else."""
    if not _CURSOR.fullmatch(cursor):
        raise invalid("cursor", "cursor is not a cursor this server issued; pass next_cursor as is")
    return int(cursor[1:])
