"""The exporter's one door to Stripe: the official client, pinned, with timeouts, retries and request counts.

stripe-python does the HTTP; this module decides what it does not (docs/sources.md#stripe-rate-limits,
docs/sources.md#stripe-python): `StripeClient` makes no retries by default and never retries a plain 429, and its
default timeout is 80 s. Every call here is one Stripe request, retried with jittered exponential backoff on 429, 5xx,
409 and network errors for as long as the Lambda's remaining time allows, and counted, so a run can report what it cost.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, cast

import stripe
from stripe._request_options import extract_options_from_dict  # stripe-python's own, as raw_request uses it
from stripe._util import get_api_mode
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.stop import stop_base

from ...config import STRIPE_API_VERSION, Settings
from ...models.snapshot import StripeJson

# The upload's token bucket serves Stripe too: the same smooth spacing of requests, one place that gets it right.
from ...sinks.chartmogul.limiter import ChartMogulLimiter as RequestLimiter

# Stripe's maximum page size (docs/sources.md#stripe-pagination); every list the exporter makes uses it.
PAGE_SIZE = 100
# A bound on the pages of one list walk: 100 million objects, more than any real account holds of one type. A
# walk that reaches it is a bug (a cursor that loops), not an account: it fails instead of paging forever.
MAX_PAGES_PER_LIST = 1_000_000


class TimeBudget:
    """What is left of the invocation's time, so retries and long runs stop before Lambda kills them."""

    def __init__(self, remaining_ms: Callable[[], int]) -> None:
        self._remaining_ms = remaining_ms

    @classmethod
    def from_lambda_context(cls, context: Any) -> TimeBudget:
        return cls(context.get_remaining_time_in_millis)

    @classmethod
    def of_seconds(cls, seconds: float) -> TimeBudget:
        """A budget ending `seconds` from now (command line, benchmarks)."""
        deadline = time.monotonic() + seconds
        return cls(lambda: int((deadline - time.monotonic()) * 1000))

    def remaining_s(self) -> float:
        return self._remaining_ms() / 1000


@dataclass
class RetryPolicy:
    max_attempts: int = 10
    # Full jitter: a random wait in [0, min(max_wait_s, base_wait_s * 2^n)] (AWS "exponential backoff and
    # jitter"), so many exporters hitting a 429 together do not come back together.
    base_wait_s: float = 0.5
    max_wait_s: float = 20.0
    # Never start a wait that would leave less than this for the work after it (and the handover).
    reserve_s: float = 30.0


@dataclass
class StripeRequestStats:
    requests: int = 0
    retries: int = 0
    # 401/403: the key is wrong, revoked or lacks a permission (published as StripeAuthFailures).
    auth_failures: int = 0


class StripeList(StrEnum):
    """The list endpoints the exporter reads."""

    PRODUCTS = "products"
    PRICES = "prices"
    CUSTOMERS = "customers"
    SUBSCRIPTIONS = "subscriptions"
    SUBSCRIPTION_ITEMS = "subscription_items"
    INVOICES = "invoices"
    INVOICE_ITEMS = "invoice_items"
    INVOICE_PAYMENTS = "invoice_payments"
    CHARGES = "charges"
    REFUNDS = "refunds"
    CREDIT_NOTES = "credit_notes"
    EVENTS = "events"

    @property
    def path(self) -> str:
        return "/v1/invoiceitems" if self is StripeList.INVOICE_ITEMS else f"/v1/{self.value}"


@dataclass(frozen=True)
class Page:
    data: list[StripeJson]
    has_more: bool

    @property
    def last_id(self) -> str | None:
        return str(self.data[-1]["id"]) if self.data else None


class PagingError(RuntimeError):
    """A list walk that would never end: its cursor stopped moving, or it passed `MAX_PAGES_PER_LIST`."""


def follow_pages(
    next_page: Callable[[str | None], Page],
    what: str,
    *,
    starting_after: str | None = None,
    max_pages: int = MAX_PAGES_PER_LIST,
) -> Iterator[Page]:
    """Pages of one list, each asked for after the last object of the one before, until `has_more` is false.

    Fails loudly rather than loop: a page that ends on the object it was asked to start after would be asked
    for again and again, and no real list has more than `max_pages` pages.
    """
    for _ in range(max_pages):
        page = next_page(starting_after)
        yield page
        if not page.has_more or page.last_id is None:
            return
        if page.last_id == starting_after:
            raise PagingError(f"{what}: the page after {starting_after} ends on {starting_after} again")
        starting_after = page.last_id
    raise PagingError(f"{what}: more than {max_pages} pages; the list cursor is not getting anywhere")


def is_transient(error: BaseException) -> bool:
    """A failure worth retrying: the same request can succeed later (docs/sources.md#stripe-rate-limits)."""
    if isinstance(error, stripe.APIConnectionError):  # timeouts, resets, refused connections
        return True
    if not isinstance(error, stripe.StripeError):
        return False
    if _header(error, "stripe-should-retry") == "false":
        return False
    status = error.http_status or 0
    # 429 covers both the rate limiter and lock timeouts; 409 is a conflicting concurrent request.
    return status in (409, 429) or status >= 500


def is_permanent_for_object(error: BaseException) -> bool:
    """Stripe refused a request about one object for good: asking again gets the same answer (a 404 for a
    customer that is gone, a 400 for a request it cannot serve). 429 and 409 pass, and 401/403 are the API
    key's fault, not the object's: those fail the run, which is retried, instead of setting a record aside."""
    if not isinstance(error, stripe.StripeError) or isinstance(error, stripe.APIConnectionError):
        return False
    status = error.http_status or 0
    return 400 <= status < 500 and status not in (401, 403, 409, 429)


def stripe_error_body(error: stripe.StripeError) -> str | None:
    """Stripe's answer to a refused request, verbatim when stripe-python kept it."""
    if error.http_body:
        return error.http_body
    return json.dumps(error.json_body) if error.json_body else None


def _header(error: stripe.StripeError, name: str) -> str | None:
    for key, value in (error.headers or {}).items():
        if key.lower() == name:
            return str(value).lower()
    return None


class _RetryAfterOrJitter:
    """Waits for Stripe's `Retry-After` when it sends one, else full-jitter exponential backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = wait_random_exponential(multiplier=policy.base_wait_s, max=policy.max_wait_s)
        self._max = policy.max_wait_s

    def __call__(self, retry_state: RetryCallState) -> float:
        jittered = float(self._jitter(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, stripe.StripeError):
            retry_after = _header(error, "retry-after")
            if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
                return min(float(retry_after), self._max) + jittered / 10
        return jittered


class _OutOfTime(stop_base):
    """Stop retrying when the next wait would eat into the time the run needs to finish or hand over."""

    def __init__(self, budget: TimeBudget, reserve_s: float) -> None:
        self._budget = budget
        self._reserve_s = reserve_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._budget.remaining_s() - retry_state.upcoming_sleep < self._reserve_s


class StripeApi:
    """Read-only Stripe calls, one request each, retried inside the time budget and counted."""

    def __init__(
        self,
        client: stripe.StripeClient,
        budget: TimeBudget,
        policy: RetryPolicy | None = None,
        stats: StripeRequestStats | None = None,
        on_retry: Callable[[str, BaseException, float], None] | None = None,
        limiter: RequestLimiter | None = None,
    ) -> None:
        self._client = client
        self._budget = budget
        self._policy = policy or RetryPolicy()
        self.stats = stats or StripeRequestStats()
        # The backfill's list lanes call from several threads; the counts must not lose an increment.
        self._stats_lock = threading.Lock()
        self._on_retry = on_retry
        # The Stripe request budget (`stripe_request_limiter`); None: as fast as Stripe answers (tests, CLI).
        self._limiter = limiter

    # -- calls ---------------------------------------------------------------------------------------------

    def list_page(
        self, resource: StripeList, params: Mapping[str, Any], *, endpoint: RequestLimiter | None = None
    ) -> Page:
        """One page (up to 100 objects) of a list endpoint; each attempt also within `endpoint`, that endpoint's
        own budget (Stripe limits each endpoint apart from the whole, docs/sources.md#stripe-rate-limits)."""
        answer = self._get(f"list {resource.value}", resource.path, {"limit": PAGE_SIZE, **params}, endpoint)
        return Page(data=list(answer["data"]), has_more=bool(answer["has_more"]))

    def list_all(self, resource: StripeList, params: Mapping[str, Any]) -> Iterator[StripeJson]:
        """Every object of a list, page by page (100 each), following `starting_after`."""

        def next_page(starting_after: str | None) -> Page:
            cursor = {"starting_after": starting_after} if starting_after else {}
            return self.list_page(resource, {**params, **cursor})

        for page in follow_pages(next_page, f"list {resource.value}"):
            yield from page.data

    def list_lines(
        self, parent: StripeList, parent_id: str, starting_after: str, *, expand: Sequence[str] = ()
    ) -> Page:
        """Lines past the first page embedded in an invoice or a credit note (GET /v1/invoices/{id}/lines)."""
        query: dict[str, Any] = {"limit": PAGE_SIZE, "starting_after": starting_after}
        if expand:
            query["expand"] = list(expand)
        answer = self._get(f"list {parent.value} lines", f"{parent.path}/{_path_id(parent_id)}/lines", query)
        return Page(data=list(answer["data"]), has_more=bool(answer["has_more"]))

    def retrieve(self, resource: StripeList, object_id: str) -> StripeJson:
        return self._get(f"retrieve {resource.value}", f"{resource.path}/{_path_id(object_id)}", {})

    # -- machinery -----------------------------------------------------------------------------------------

    def _get(
        self, what: str, path: str, params: Mapping[str, Any], endpoint: RequestLimiter | None = None
    ) -> StripeJson:
        return self._call(what, lambda: self._raw_get(path, params), endpoint)  # type: ignore[no-any-return]

    def _raw_get(self, path: str, params: Mapping[str, Any]) -> StripeJson:
        """`StripeClient.raw_request("get", ...)`'s answer, parsed without its OrderedDicts.

        `raw_request` is stripe-python's own request path (auth, pinned Stripe-Version, error mapping) without
        building StripeObjects: the snapshot keeps Stripe's JSON untouched, and converting each page to
        StripeObjects and back cost half the backfill's CPU. It parses every answer with
        `object_pairs_hook=OrderedDict` (stripe/_stripe_response.py), which makes json's C decoder call back into
        Python for every object: 2.7 times slower than a plain parse on a page of 100 invoices, and the largest part
        of the export's CPU. So this makes the same two calls as `raw_request` (stripe/_stripe_client.py, stripe
        16.1.0, pinned), the requestor's `request_raw` and, for an answer other than a 2xx with JSON,
        `_interpret_response`, which raises stripe-python's errors; a 2xx is parsed with plain dicts.
        """
        options, query = extract_options_from_dict(dict(params))
        api_mode = get_api_mode(path)
        requestor = self._client._requestor
        body, code, headers = requestor.request_raw(
            "get", path, params=query, options=options, base_address="api", api_mode=api_mode, usage=["raw_request"]
        )
        if 200 <= code < 300 and isinstance(body, bytes | str):
            with contextlib.suppress(ValueError):  # not JSON: stripe-python's own error below says so
                data: StripeJson = json.loads(body)
                return data
        return cast(StripeJson, requestor._interpret_response(body, code, headers, api_mode).data)

    def _call(self, what: str, request: Callable[[], Any], endpoint: RequestLimiter | None = None) -> Any:
        policy = self._policy

        def before_sleep(retry_state: RetryCallState) -> None:
            with self._stats_lock:
                self.stats.retries += 1
            if self._on_retry is not None and retry_state.outcome is not None:
                error = retry_state.outcome.exception()
                if error is not None:
                    self._on_retry(what, error, retry_state.upcoming_sleep)

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=_RetryAfterOrJitter(policy),
            stop=stop_after_attempt(policy.max_attempts) | _OutOfTime(self._budget, policy.reserve_s),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._counted, request, endpoint)

    def _counted(self, request: Callable[[], Any], endpoint: RequestLimiter | None) -> Any:
        # Every attempt, retries included, takes its place in the budgets: Stripe counts them all.
        deadline = time.monotonic() + self._budget.remaining_s() - self._policy.reserve_s
        with ExitStack() as slots:
            for limiter in (endpoint, self._limiter):
                if limiter is not None:
                    slots.enter_context(limiter.slot(deadline))
            return self._send(request)

    def _send(self, request: Callable[[], Any]) -> Any:
        try:
            answer = request()
        except stripe.StripeError as error:
            with self._stats_lock:
                self.stats.requests += 1  # refused, or lost on the way: a request made all the same
                if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
                    self.stats.auth_failures += 1
            raise
        with self._stats_lock:
            self.stats.requests += 1
        return answer


def _path_id(object_id: str) -> str:
    # Ids go into the path: refuse anything that is not one, rather than request another URL.
    if not object_id.replace("_", "").isalnum():
        raise ValueError(f"{object_id!r} is not a Stripe object id")
    return object_id


class ApiKeySource(Protocol):
    def __call__(self, secret_name: str) -> str: ...


def api_key_from_secrets_manager(secret_name: str) -> str:
    """The Stripe key, through Powertools Parameters: cached for 5 minutes per execution environment."""
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_secret(secret_name, max_age=300)


def stripe_request_limiter(
    settings: Settings, api_key: str, *, realtime: bool = False, audit: bool = False, connections: int = 1
) -> RequestLimiter:
    """This invocation's share of Stripe's rate limit (`Settings.stripe_requests_per_second`: the Stripe events
    function's with `realtime`, the Audit function's with `audit`, else the export function's), requests spaced
    evenly; at most `connections` at once (the backfill's list lanes; one for the rest, which ask one by one)."""
    rate = settings.stripe_requests_per_second(api_key, realtime=realtime, audit=audit)
    return RequestLimiter(requests_per_second=rate, max_connections=connections)


def make_stripe_client(settings: Settings, api_key: str) -> stripe.StripeClient:
    """The official client, pinned to our API version, with explicit timeouts and its own retries off."""
    base_addresses: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        api_key,
        # Pinned explicitly, so a client upgrade never silently changes the shapes we store
        # (docs/sources.md#stripe-python).
        stripe_version=STRIPE_API_VERSION,
        base_addresses=base_addresses,
        # Retries are ours (StripeApi), counted and bounded by the time budget.
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=(settings.http_connect_timeout_s, settings.http_read_timeout_s)),
    )
