"""The Stripe emulator on the emulator kit: start it in-process (tests) or from the command line.

from localdev.scenarios import generate_account
from localdev.stripe_emulator import start

with start(generate_account(customers=20, months=6, seed=1), rate_limit=None) as emulator:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": emulator.base_url})
    ...
    emulator.clock.advance(days=3)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any, Literal, Protocol

from localdev.child_process import process_figures
from localdev.emulator_kit import EmulatorServer, ErrorHooks, Request, Response, Router, ServerSettings, json_response
from localdev.stripe_emulator import records
from localdev.stripe_emulator.api import StripeApi
from localdev.stripe_emulator.errors import StripeApiError
from localdev.stripe_emulator.eventbridge import EventBridgeDestination
from localdev.stripe_emulator.handle import StripeEmulatorHandle
from localdev.stripe_emulator.store import StripeStore

Mode = Literal["test", "live"]
# Stripe's global limits (docs/sources.md#stripe-rate-limits): 25 requests/s in test mode, 100 in live mode.
STRIPE_RATE_LIMITS: dict[str, float] = {"test": 25.0, "live": 100.0}
# And each endpoint's, in both modes, counted besides the global one (https://docs.stripe.com/rate-limits: "API
# endpoints have a default limit of 25 requests per second"; "Stripe considers each named API operation a separate
# endpoint", so GET /v1/invoices/{id}/lines for different invoices counts against one limit: the kit's route template).
STRIPE_ENDPOINT_RATE_LIMIT = 25.0


def endpoint_rate(rate_limit: float | Literal["stripe"] | None, endpoint_rate_limit: float | None) -> float | None:
    """The per-endpoint rate `start()` applies: the one given (0: off), else Stripe's with `rate_limit="stripe"`."""
    if endpoint_rate_limit is None:
        return STRIPE_ENDPOINT_RATE_LIMIT if rate_limit == "stripe" else None
    return endpoint_rate_limit or None


class AccountLike(Protocol):
    """What the emulator needs from a generated account (`localdev.scenarios.Account`)."""

    store: StripeStore

    def apply_step(self, step: dict[str, Any]) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def advance_to(self, now: int) -> None: ...

    def ground_truth(self) -> dict[str, Any]: ...


class EmulatorClock:
    """The emulated account's "now" (Unix seconds): event retention, object states and new steps follow it."""

    def __init__(self, store_holder: RunningStripeEmulator) -> None:
        self._holder = store_holder

    @property
    def now(self) -> int:
        return self._holder.store.now

    def advance(self, *, seconds: int = 0, days: int = 0) -> int:
        if seconds < 0 or days < 0:
            raise ValueError("the clock only moves forward")
        return self.set(self.now + seconds + days * 86_400)

    def set(self, now: int) -> int:
        """Move the clock to `now`; with a generated account, what was due meanwhile happens (renewals...)."""
        with self._holder.lock:
            if now < self.now:
                raise ValueError("the clock only moves forward")
            if self._holder.account is not None:
                self._holder.account.advance_to(now)
            else:
                self._holder.store.now = now
            return now


_kit_request_ids = itertools.count(1)


def _error(status: int, message: str, error_type: str, code: str | None = None) -> Response:
    """An error the kit answers before a route runs (rate limit, fault, unknown URL), with a Request-Id."""
    request_id = f"req_emukit{next(_kit_request_ids):011d}"
    body = StripeApiError(status, message, error_type=error_type, code=code).body(request_id)
    return json_response(status, body, {"Request-Id": request_id})


def _fault(status: int) -> Response:
    if status == 429:
        # An injected 429 is Stripe's object lock timeout, which Stripe marks retryable; the rate limiter's 429
        # (below) is not. Both variants of docs/sources.md#stripe-rate-limits, so clients' retry rules can be tested.
        response = _error(
            429,
            "This object cannot be accessed right now because another API request or Stripe process is "
            "currently accessing it.",
            "invalid_request_error",
            "lock_timeout",
        )
        response.headers["Stripe-Should-Retry"] = "true"
        return response
    if status >= 500:
        return _error(status, "An unknown error occurred (injected fault).", "api_error")
    return _error(status, f"Injected fault {status}.", "invalid_request_error")


STRIPE_ERRORS = ErrorHooks(
    rate_limited=lambda: _error(
        429,
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        "invalid_request_error",
        "rate_limit",
    ),
    too_many_connections=lambda: _error(429, "Too many concurrent requests.", "invalid_request_error", "rate_limit"),
    fault=_fault,
    not_found=lambda request: _error(
        404, f"Unrecognized request URL ({request.method}: {request.path}).", "invalid_request_error"
    ),
    method_not_allowed=lambda request: _error(
        404, f"Unrecognized request URL ({request.method}: {request.path}).", "invalid_request_error"
    ),
    internal_error=lambda request, exc: _error(500, "An unknown error occurred in the emulator.", "api_error"),
)


def active_subscribers(store: StripeStore) -> list[str]:
    """Ids of the customers with a live subscription that is `active` at the store's clock, sorted."""
    now = store.now
    return sorted(
        {
            subscription.customer
            for subscription in store.collection("subscriptions").newest_first()
            if isinstance(subscription, records.Subscription)
            and subscription.ended_at is None
            and subscription.status_at(now) == "active"
        }
    )


class RunningStripeEmulator(StripeEmulatorHandle):
    """A started emulator in this process: `base_url`, `clock`, `store`, `server` (kit: counters, faults, limits),
    `stop()`, and what every handle offers (handle.py)."""

    def __init__(
        self,
        account: AccountLike | StripeStore,
        *,
        mode: Mode = "test",
        rate_limit: float | Literal["stripe"] | None = None,
        endpoint_rate_limit: float | None = None,
        faults: str | None = None,
        seed: int | None = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        event_list_lag_s: int = 0,
        restricted_keys: dict[str, frozenset[str]] | None = None,
        follow_wall_clock: bool = False,
    ) -> None:
        self.account = None if isinstance(account, StripeStore) else account
        self._store = account if isinstance(account, StripeStore) else account.store
        self._store.livemode = mode == "live"
        self.mode = mode
        self.lock = threading.RLock()
        self.api = StripeApi(self._store, self.lock, event_list_lag_s, restricted_keys)
        self.clock = EmulatorClock(self)
        self.event_destinations: list[EventBridgeDestination] = []
        rate = STRIPE_RATE_LIMITS[mode] if rate_limit == "stripe" else rate_limit
        self.server = EmulatorServer(
            self.api.router(),
            errors=STRIPE_ERRORS,
            before_request=self._before_request if follow_wall_clock else self.api.check_request,
            dump_state=self.state,
            reset_state=self.reset_state,
            admin_router=self._admin_router(),
            settings=ServerSettings(
                host=host,
                port=port,
                rate_limit=rate,
                route_rate_limit=endpoint_rate(rate_limit, endpoint_rate_limit),
                faults=faults or "",
                seed=seed,
            ),
            name=f"stripe-emulator-{mode}",
        )

    def _before_request(self, request: Request) -> Response | None:
        """With `follow_wall_clock`, the account lives in real time, as a real one does: before each request
        the clock moves to now (what fell due meanwhile happens), so events and changes carry real times."""
        now = int(time.time())
        if now > self.clock.now:
            self.clock.set(now)
        return self.api.check_request(request)

    @property
    def store(self) -> StripeStore:
        # An account's reset() rebuilds its store; always read it through the account.
        return self.account.store if self.account is not None else self._store

    # ---- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> RunningStripeEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        for destination in self.event_destinations:
            destination.stop()
        self.server.stop()

    def add_event_destination(self, destination: EventBridgeDestination) -> EventBridgeDestination:
        """Deliver the account's events from now on to Amazon EventBridge (`eventbridge.py`); stopped with the
        emulator."""
        destination.attach(self)
        self.event_destinations.append(destination)
        return destination

    @property
    def base_url(self) -> str:
        return self.server.base_url

    # ---- what every handle offers (handle.py) -----------------------------------------------------------

    def request_report(self) -> dict[str, Any]:
        return self.server.request_report()

    @property
    def rate_limit(self) -> float | None:
        return self.server.bucket.rate

    def set_faults(self, spec: str | None, seed: int | None = None) -> None:
        self.server.set_faults(spec, seed)

    def set_latency(self, seconds: float) -> None:
        self.server.set_latency(seconds)

    def ground_truth(self) -> dict[str, Any]:
        if self.account is None:
            raise ValueError("no ground truth: the emulator serves a bare store")
        with self.lock:
            return self.account.ground_truth()

    def active_subscribers(self) -> list[str]:
        with self.lock:
            return active_subscribers(self.store)

    # ---- admin ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "now": self.store.now,
            "mode": self.mode,
            "objects": self.store.counts(),
            "event_list_lag_s": self.api.event_list_lag_s,
        }

    def reset_state(self) -> None:
        if self.account is not None:
            with self.lock:
                self.account.reset()
                self.store.livemode = self.mode == "live"
                self.api.store = self.store

    def apply_step(self, step: dict[str, Any]) -> dict[str, Any]:
        """Apply one scenario step (`localdev/scenarios/steps.py`) at the emulator's clock."""
        if self.account is None:
            raise ValueError("scenario steps need an account from localdev.scenarios, not a bare store")
        with self.lock:
            return self.account.apply_step(step)

    def _admin_router(self) -> Router:
        prefix = "/_admin"
        router = Router()
        router.add("GET", f"{prefix}/clock", lambda req: json_response(200, {"now": self.clock.now}))
        router.add("POST", f"{prefix}/clock", self._admin_clock)
        router.add("POST", f"{prefix}/scenario-steps", self._admin_step)
        router.add("GET", f"{prefix}/ground-truth", self._admin_truth)
        router.add("GET", f"{prefix}/active-subscribers", self._admin_subscribers)
        # The CPU of the process serving: what a benchmark with the emulator in a process of its own adds to its own.
        router.add("GET", f"{prefix}/process", lambda req: json_response(200, process_figures()))
        return router

    def _admin_clock(self, request: Request) -> Response:
        body = request.json() or {}
        try:
            if "now" in body:
                self.clock.set(int(body["now"]))
            else:
                self.clock.advance(seconds=int(body.get("seconds", 0)), days=int(body.get("days", 0)))
        except (TypeError, ValueError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, {"now": self.store.now})

    def _admin_step(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return json_response(400, {"error": "expected a JSON object describing one scenario step"})
        try:
            return json_response(200, self.apply_step(body))
        except (KeyError, ValueError) as exc:
            return json_response(400, {"error": str(exc)})

    def _admin_subscribers(self, request: Request) -> Response:
        return json_response(200, {"customers": self.active_subscribers()})

    def _admin_truth(self, request: Request) -> Response:
        try:
            truth = self.ground_truth()
        except ValueError as exc:
            return json_response(404, {"error": str(exc)})
        return Response(200, json.dumps(truth).encode(), {"Content-Type": "application/json"})


def start(
    account: AccountLike | StripeStore,
    *,
    mode: Mode = "test",
    rate_limit: float | Literal["stripe"] | None = None,
    endpoint_rate_limit: float | None = None,
    faults: str | None = None,
    seed: int | None = 0,
    host: str = "127.0.0.1",
    port: int = 0,
    event_list_lag_s: int = 0,
    restricted_keys: dict[str, frozenset[str]] | None = None,
    follow_wall_clock: bool = False,
) -> RunningStripeEmulator:
    """Serve `account` on loopback in a daemon thread; use as a context manager or call `.stop()`.

    `rate_limit=None` (default) serves without a limit; `"stripe"` applies Stripe's: the global one for the mode (25
    requests/s in test mode, 100 in live mode) and 25 requests/s for each endpoint (method + path template) on top;
    a number sets the global requests/s only. `endpoint_rate_limit` sets the per-endpoint requests/s whatever
    `rate_limit` is (0: off); None leaves Stripe's with `"stripe"`, none otherwise.
    `faults` is the kit's spec, e.g. `"500:0.05,429:0.05,timeout:0.01"` (an injected 429 is a retryable
    `lock_timeout`; the rate limiter's 429 is a plain `rate_limit`).
    `event_list_lag_s` > 0 makes the events list eventually consistent: each event joins it up to that many seconds
    after its `created`.
    `restricted_keys` maps `rk_…` keys to the permissions they hold (api.READ_PERMISSIONS); a request a key has
    no permission for gets Stripe's 403.
    """
    return RunningStripeEmulator(
        account,
        mode=mode,
        rate_limit=rate_limit,
        endpoint_rate_limit=endpoint_rate_limit,
        faults=faults,
        seed=seed,
        host=host,
        port=port,
        event_list_lag_s=event_list_lag_s,
        restricted_keys=restricted_keys,
        follow_wall_clock=follow_wall_clock,
    ).start()
