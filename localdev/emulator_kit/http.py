"""Request and response objects of the emulator kit (no HTTP server code here)."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any


class MalformedJSON(ValueError):
    """The request body is not valid JSON (emulators answer 400)."""


@dataclass
class Request:
    """One parsed HTTP request as a route handler sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # filled from the route pattern's {name} parts
    route: str = ""  # the matched route's name, e.g. "GET /v1/customers/{uuid}"

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def query_one(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query parameter (what most servers do with repeated keys)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        """The body parsed as JSON; an empty body is `None`. Raises `MalformedJSON`."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedJSON(str(exc)) from exc

    def form(self) -> dict[str, list[str]]:
        """An `application/x-www-form-urlencoded` body (Stripe's request format) as a dict of lists."""
        return urllib.parse.parse_qs(self.body.decode("utf-8", errors="replace"), keep_blank_values=True)


@dataclass
class Response:
    """What a handler returns; the server writes it as is."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


def empty_response(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status, b"", dict(headers or {}))
