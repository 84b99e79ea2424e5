"""ChartMogul's response bodies: error shapes (docs/sources.md#cm-errors) and list envelopes (#cm-pagination)."""

from __future__ import annotations

import base64
from typing import Any

from localdev.chartmogul_emulator.validation import SchemaError
from localdev.emulator_kit import MalformedJSON, Request, Response, json_response, text_response

RATE_LIMIT_MESSAGE = "Your request rate has exceeded our rate limit."  # docs/sources.md#cm-summary / #cm-rate-limits
MAX_PER_PAGE = 200  # docs/sources.md#cm-pagination: default 200, larger values are clamped

# docs/sources.md#cm-transport: recorded 5xx bodies are plain text.
_SERVER_ERROR_TEXT = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout Error",
}


class APIProblem(Exception):
    """Raised inside a handler to answer with `response` (keeps handlers linear)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def coded_error(status: int, message: str, param: str | None = None) -> Response:
    """The newer shape `{"code":..,"message":..,"param":..}` used for 400/401 (docs/sources.md#cm-errors)."""
    return json_response(status, {"code": status, "message": message, "param": param})


def unauthorized() -> Response:
    return coded_error(401, "No valid API key provided")  # docs/sources.md#cm-transport (recorded)


def not_found(message: str) -> Response:
    """Legacy Import-API not-found `{"error": "Data source not found"}` (docs/sources.md#cm-errors)."""
    return json_response(404, {"error": message})


def field_errors(errors: dict[str, str]) -> Response:
    """Legacy Import-API 422 `{"errors": {field: message}}` (docs/sources.md#cm-errors)."""
    return json_response(422, {"errors": errors})


def schema_error(exc: SchemaError) -> Response:
    return coded_error(400, exc.message, exc.param)  # docs/sources.md#cm-validation: first offending param only


def rate_limited() -> Response:
    return coded_error(429, RATE_LIMIT_MESSAGE)


def too_many_connections() -> Response:
    return text_response(503, _SERVER_ERROR_TEXT[503])  # docs/sources.md#cm-rate-limits: 503 Service unavailable


def injected_fault(status: int) -> Response:
    if status == 429:
        return rate_limited()
    return text_response(status, _SERVER_ERROR_TEXT.get(status, f"{status} Error"))


def route_not_found(request: Request) -> Response:
    return coded_error(404, f"No route matches {request.method} {request.path}")


def method_not_allowed(request: Request) -> Response:
    return coded_error(405, f"Method {request.method} is not allowed on {request.path}")


def malformed_json(request: Request, exc: MalformedJSON) -> Response:
    return coded_error(400, f"The request body is not valid JSON: {exc}")


def internal_error(request: Request, exc: BaseException) -> Response:
    return text_response(500, _SERVER_ERROR_TEXT[500])


# ---- pagination --------------------------------------------------------------------------------------


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "after":
            raise ValueError(cursor)
        return int(number)
    except ValueError:
        raise SchemaError("cursor") from None


def per_page(request: Request) -> int:
    text = request.query_one("per_page")
    if text is None or text == "":
        return MAX_PER_PAGE
    try:
        value = int(text)
    except ValueError:
        raise SchemaError("per_page") from None
    if value < 1:
        raise SchemaError("per_page")
    return min(value, MAX_PER_PAGE)


def page_envelope(
    key: str, items: list[Any], has_more: bool, last_seq: int | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """docs/sources.md#cm-pagination: the list key + `cursor` + `has_more` (plus per-endpoint extras, never forbidden
    keys)."""
    return {
        **(extra or {}),
        key: items,
        "has_more": has_more,
        "cursor": encode_cursor(last_seq) if last_seq is not None else None,
    }
