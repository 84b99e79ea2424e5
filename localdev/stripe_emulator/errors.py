"""Stripe's error envelope (``{"error": {"type", "message", "code", "param", "doc_url"}}``) as an exception."""

from __future__ import annotations

from typing import Any


class StripeApiError(Exception):
    """An API error the emulator answers with Stripe's status code and error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        if request_id is not None:
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def no_such(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return StripeApiError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def invalid(message: str, param: str | None = None) -> StripeApiError:
    return StripeApiError(400, message, param=param)
