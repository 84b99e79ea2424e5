"""The one door to ChartMogul: the `chartmogul` 4.11 client, configured for Lambda, behind our own retry.

docs/sources.md#cm-python-client: the client's built-in retries sleep up to ~30 minutes (longer than a Lambda
may live), never retry PATCH, and are off entirely over plain http; its default timeout is none (wait forever). So
its retries are switched off (`max_retries=0`), every request has a (connect, read) timeout, and `ChartMogulApi.call`
retries transient failures itself: jittered exponential backoff, honouring `Retry-After`, never past the time budget
the Lambda has left. Every request first takes a slot from the shared limiter (limiter.py).
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import chartmogul
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.stop import stop_base

from chartmogul_sync.config import Settings

from .limiter import ChartMogulLimiter, OutOfTime

T = TypeVar("T")

# docs/sources.md#cm-client-retries: the statuses ChartMogul's own clients treat as worth retrying (429 rate limit, 503
# too many parallel connections, gateway errors); 408 is a request timeout on the way.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 524})
# A wrong or expired key, or an account problem (docs/sources.md#cm-transport: response codes): not the record's fault,
# and retrying now will not help. The record fails without burning the time budget; SQS retries it later, then the DLQ
# keeps it.
ACCOUNT_STATUSES = frozenset({401, 402, 403})
# docs/sources.md#cm-summary and #cm-validation: the duplicate-external-id messages ("... already exists in our
# system.", transactions and data-source names "has already been taken").
DUPLICATE_MARKERS = ("already exists", "already been taken")


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # retried here with backoff, then by SQS, then the DLQ
    PERMANENT = "permanent"  # the bad-records queue, with ChartMogul's error body
    ALREADY_EXISTS = "already_exists"  # a duplicate external id: success, once the object is looked up
    NOT_FOUND = "not_found"  # permanent, but a caller deleting something may expect it


@dataclass(frozen=True)
class ErrorDetail:
    """One complaint in a ChartMogul error body: about which object (if it says), which field, and what."""

    message: str
    field: str | None = None
    object_id: str | None = None


class ChartMogulError(Exception):
    """A classified failure of one ChartMogul request."""

    def __init__(
        self,
        operation: str,
        kind: FailureKind,
        *,
        status: int | None = None,
        body: str = "",
        retry_now: bool = True,
        retry_after_s: float | None = None,
        detail: str = "",
    ) -> None:
        self.operation = operation
        self.kind = kind
        self.status = status
        self.body = body
        self.retry_now = retry_now
        self.retry_after_s = retry_after_s
        self.details = error_details(body) if body else []
        summary = detail or "; ".join(_describe(d) for d in self.details[:5]) or body[:300]
        super().__init__(f"{operation}: {kind.value}" + (f" ({status})" if status else "") + f": {summary}")


def _describe(detail: ErrorDetail) -> str:
    where = ".".join(part for part in (detail.object_id, detail.field) if part)
    return f"{where}: {detail.message}" if where else detail.message


def error_details(body: str) -> list[ErrorDetail]:
    """Every complaint in an error body, whatever its generation (docs/sources.md#cm-errors lists the shapes seen)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return [ErrorDetail(message=body.strip()[:500])] if body.strip() else []
    if not isinstance(parsed, dict):
        return [ErrorDetail(message=str(parsed)[:500])]
    details: list[ErrorDetail] = []
    errors = parsed.get("errors")
    if isinstance(errors, dict):
        details += _field_messages(errors, object_id=None)
    # The invoice import's per-invoice answer: {"invoices": [{"external_id": ..., "errors": {...}}]}
    # (docs/sources.md#cm-partial-success).
    for invoice in parsed.get("invoices") or []:
        if isinstance(invoice, dict) and isinstance(invoice.get("errors"), dict):
            details += _field_messages(invoice["errors"], object_id=invoice.get("external_id"))
    # Our own summary of a 201 answer that stored objects with `errors` (uploader.invalid_objects).
    for stored in parsed.get("invalid_objects") or []:
        if isinstance(stored, dict) and isinstance(stored.get("errors"), dict):
            details += _field_messages(stored["errors"], object_id=stored.get("external_id"))
    for item in parsed.get("error_details") or []:
        if isinstance(item, dict) and item.get("message"):
            details.append(ErrorDetail(message=str(item["message"]), field=item.get("param")))
    if not details and isinstance(parsed.get("error"), str):
        details.append(ErrorDetail(message=parsed["error"]))
    if not details and isinstance(parsed.get("message"), str):
        details.append(ErrorDetail(message=parsed["message"], field=parsed.get("param")))
    if not details:  # Rails style: {"name": ["Name can't be blank"], ...}
        for key, value in parsed.items():
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                details += [ErrorDetail(message=v, field=key) for v in value]
    return details


def _field_messages(errors: dict[str, Any], object_id: str | None) -> list[ErrorDetail]:
    details = []
    for field_name, value in errors.items():
        messages = value if isinstance(value, list) else [value]
        details += [ErrorDetail(message=str(m), field=field_name, object_id=object_id) for m in messages if m]
    return details


def _is_duplicate(detail: ErrorDetail) -> bool:
    return any(marker in detail.message.lower() for marker in DUPLICATE_MARKERS)


# The parts of an invoice whose external ids are checked with it (docs/sources.md#cm-validation:
# `line_items.external_id`, `transactions.external_id` next to the invoice's own `external_id`).
_INVOICE_PARTS = ("line_items", "transactions")


def is_duplicate_only(details: list[ErrorDetail]) -> bool:
    """True when every complaint says "already exists", and the objects it names exist as a whole.

    ChartMogul's Go SDK rule (chartmogul/chartmogul-go `chartmogul.go`, `IsInvoiceAndItsEntitiesAlreadyExist`): a
    line item's or transaction's duplicate external id counts as "already imported" only when the invoice itself
    already exists. Naming only a line item or transaction while the invoice is new is "a different problem
    (duplicating txns)": an id used by another invoice, which no lookup will resolve, so it is permanent.
    """
    if not details or not all(_is_duplicate(d) for d in details):
        return False
    existing_invoices = {d.object_id for d in details if d.field == "external_id"}
    return all(
        d.object_id in existing_invoices
        for d in details
        if d.field is not None and d.field.split(".", 1)[0] in _INVOICE_PARTS
    )


_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.RetryError,
)


def classify(operation: str, error: Exception) -> ChartMogulError:
    """Turn whatever the client raised into a ChartMogulError with a kind (docs/sources.md#cm-client-errors lists what
    it raises)."""
    if isinstance(error, ChartMogulError):
        return error
    if isinstance(error, OutOfTime):
        return ChartMogulError(operation, FailureKind.TRANSIENT, retry_now=False, detail=str(error))
    if isinstance(error, chartmogul.APIError):
        cause = error.__cause__
        response = getattr(cause, "response", None)
        status = getattr(response, "status_code", None)
        raw = error.args[0] if error.args else b""
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if status is None:
            return ChartMogulError(operation, FailureKind.TRANSIENT, body=body, detail="no HTTP status")
        if status in TRANSIENT_STATUSES:
            return ChartMogulError(
                operation, FailureKind.TRANSIENT, status=status, body=body, retry_after_s=_retry_after(response)
            )
        if status in ACCOUNT_STATUSES:
            return ChartMogulError(operation, FailureKind.TRANSIENT, status=status, body=body, retry_now=False)
        if status == 404:
            return ChartMogulError(operation, FailureKind.NOT_FOUND, status=status, body=body)
        if status == 422 and is_duplicate_only(error_details(body)):
            return ChartMogulError(operation, FailureKind.ALREADY_EXISTS, status=status, body=body)
        if 400 <= status < 500:
            return ChartMogulError(operation, FailureKind.PERMANENT, status=status, body=body)
        return ChartMogulError(operation, FailureKind.TRANSIENT, status=status, body=body)
    if isinstance(error, _NETWORK_ERRORS):
        # Timeouts and resets: the request may or may not have reached ChartMogul. A retried POST that had
        # succeeded comes back as a duplicate, which counts as success (docs/sources.md#cm-idempotency).
        return ChartMogulError(operation, FailureKind.TRANSIENT, detail=f"{type(error).__name__}: {error}")
    # An answer the client could not parse (marshmallow ValidationError, TypeError on unknown list keys,
    # docs/sources.md#cm-client-issues), or a bug of ours: the write may have happened, so never a bad record; SQS
    # retries, then the DLQ keeps it.
    return ChartMogulError(
        operation, FailureKind.TRANSIENT, retry_now=False, detail=f"unexpected {type(error).__name__}: {error}"
    )


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        # an HTTP date; ChartMogul is not documented to send any (docs/sources.md#cm-summary), so backoff decides
        return None


@dataclass(frozen=True)
class TimeBudget:
    """The moment (time.monotonic) by which work must stop, or None for no limit (command line, tests)."""

    deadline: float | None = None

    @classmethod
    def from_lambda_context(cls, context: Any, reserve_s: float = 10.0) -> "TimeBudget":
        # The reserve leaves time to send bad records and return the batch response before Lambda stops us.
        remaining_s = context.get_remaining_time_in_millis() / 1000.0
        return cls(time.monotonic() + max(0.0, remaining_s - reserve_s))

    @classmethod
    def seconds(cls, seconds: float) -> "TimeBudget":
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


def read_api_key(settings: Settings) -> str:
    """The ChartMogul API key from Secrets Manager (Powertools caches it for 5 minutes; it is never logged)."""
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(settings.chartmogul_secret_name, max_age=300)
    key = secret.decode() if isinstance(secret, bytes) else str(secret)
    if not key.strip():
        raise ValueError(f"the secret {settings.chartmogul_secret_name!r} holds no ChartMogul API key")
    return key.strip()


def make_config(api_key: str, settings: Settings, read_timeout_s: float | None = None) -> chartmogul.Config:
    """A client Config with the client's retries off, explicit timeouts and the configured base URL."""
    config = chartmogul.Config(
        api_key,
        request_timeout=(settings.http_connect_timeout_s, read_timeout_s or settings.http_read_timeout_s),
        max_retries=0,
    )
    # docs/sources.md#cm-client-config: `uri` is a class attribute computed at import; set on the instance, it points
    # this Config (and only it) at the emulator.
    config.uri = settings.chartmogul_api_url.rstrip("/")
    return config


@dataclass
class RequestStats:
    """Requests sent and retries, for metrics and the demo report (thread-safe)."""

    requests: int = 0
    retries: int = 0
    # Answers refusing the key or the account (ACCOUNT_STATUSES), published as ChartMogulAuthFailures.
    auth_failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, *, retry: bool) -> None:
        with self._lock:
            self.requests += 1
            self.retries += int(retry)

    def count_auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1


class ChartMogulApi:
    """Sends one logical request through the limiter, classifying failures and retrying the transient ones."""

    def __init__(
        self,
        api_key: str,
        settings: Settings,
        limiter: ChartMogulLimiter,
        *,
        max_attempts: int = 6,
        max_backoff_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_key = api_key
        self._settings = settings
        self.limiter = limiter
        self._max_attempts = max_attempts
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.stats = RequestStats()
        self.config = make_config(api_key, settings)

    def call(
        self, operation: str, request: Callable[[chartmogul.Config], T], budget: TimeBudget, *, counted: bool = True
    ) -> T:
        """Run `request(config)` (one `chartmogul` call ending in `.get()`), retrying transient failures.

        `counted=False` for an occasional request (polling an import's status) that should not make this instance
        one of the busy ones sharing the rate (limiter.py).

        Raises ChartMogulError: PERMANENT / NOT_FOUND / ALREADY_EXISTS at once, TRANSIENT once the attempts or
        the time budget are spent.
        """
        attempt_number = 0

        def attempt() -> T:
            nonlocal attempt_number
            attempt_number += 1
            return self._attempt(operation, request, budget, retry=attempt_number > 1, counted=counted)

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, ChartMogulError) and _retry_now(e)),
            wait=self._wait,
            stop=stop_after_attempt(self._max_attempts)
            | _StopWhenOutOfBudget(budget, self._settings.http_connect_timeout_s),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(attempt)

    def _attempt(
        self,
        operation: str,
        request: Callable[[chartmogul.Config], T],
        budget: TimeBudget,
        retry: bool,
        counted: bool = True,
    ) -> T:
        # A request must not outlive the budget: shorten the read timeout when little time is left.
        remaining = budget.remaining()
        connect = self._settings.http_connect_timeout_s
        if remaining < connect + 1.0:
            raise ChartMogulError(operation, FailureKind.TRANSIENT, retry_now=False, detail="out of time budget")
        config = self.config
        if remaining - connect < self._settings.http_read_timeout_s:
            config = make_config(self._api_key, self._settings, read_timeout_s=remaining - connect)
        try:
            with self.limiter.slot(budget.deadline, counted=counted):
                self.stats.count(retry=retry)
                return request(config)
        except Exception as error:  # classified below: nothing escapes unnamed
            classified = classify(operation, error)
            if classified.status in ACCOUNT_STATUSES:
                self.stats.count_auth_failure()
            raise classified from error

    def _wait(self, state: RetryCallState) -> float:
        jitter = wait_random_exponential(multiplier=0.25, max=self._max_backoff_s)(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after_s if isinstance(error, ChartMogulError) else None
        return max(jitter, retry_after or 0.0)


class _StopWhenOutOfBudget(stop_base):
    """Stop when sleeping and then trying once more would not fit in the time left."""

    def __init__(self, budget: TimeBudget, connect_timeout_s: float) -> None:
        self._budget = budget
        self._needed_per_attempt = connect_timeout_s + 1.0

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._budget.remaining() < retry_state.upcoming_sleep + self._needed_per_attempt


def _retry_now(error: ChartMogulError) -> bool:
    return error.kind is FailureKind.TRANSIENT and error.retry_now
