"""The exporter's Stripe adapter against the emulator through stripe-python: what it retries, and when it stops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from chartmogul_sync.config import STRIPE_API_VERSION, Settings
from chartmogul_sync.sources.stripe.client import RetryPolicy, StripeApi, StripeList, TimeBudget, make_stripe_client
from localdev.scenarios import generate_account
from localdev.stripe_emulator import RunningStripeEmulator

from .conftest import STRIPE_KEY, serve


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningStripeEmulator]:
    with serve(generate_account(customers=5, months=2, seed=3)) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(emulator: RunningStripeEmulator) -> Iterator[None]:
    yield
    emulator.server.set_faults("", seed=None)
    emulator.server.set_rate_limit(None)
    emulator.server.counter.reset()


def api(emulator: RunningStripeEmulator, policy: RetryPolicy, seconds: float = 60.0) -> StripeApi:
    client = make_stripe_client(Settings(stripe_api_base=emulator.base_url), STRIPE_KEY)
    return StripeApi(client, TimeBudget.of_seconds(seconds), policy)


def test_the_client_sends_the_pinned_api_version(emulator: RunningStripeEmulator) -> None:
    client = make_stripe_client(Settings(stripe_api_base=emulator.base_url), STRIPE_KEY)

    answer = client.raw_request("get", "/v1/customers", limit=1)

    # The emulator answers in the version it was asked for (the Stripe-Version request header).
    assert answer.headers["Stripe-Version"] == STRIPE_API_VERSION


def test_a_page_is_one_request_of_up_to_100_objects(emulator: RunningStripeEmulator) -> None:
    stripe_api = api(emulator, RetryPolicy())

    page = stripe_api.list_page(StripeList.CUSTOMERS, {})

    assert len(page.data) == 5 and page.has_more is False
    assert stripe_api.stats.requests == 1
    assert stripe_api.retrieve(StripeList.CUSTOMERS, str(page.data[0]["id"]))["id"] == page.data[0]["id"]


def test_a_page_reads_as_stripe_pythons_raw_request_reads_it_and_errors_map_alike(
    emulator: RunningStripeEmulator,
) -> None:
    """The adapter makes raw_request's own calls but parses a 2xx without OrderedDicts: the same JSON, the same
    stripe-python error for an answer that is not a 2xx."""
    stripe_api = api(emulator, RetryPolicy(max_attempts=1))
    client = make_stripe_client(Settings(stripe_api_base=emulator.base_url), STRIPE_KEY)
    params = {"limit": 100, "expand": ["data.lines", "data.discounts"]}

    ours = stripe_api.list_page(StripeList.INVOICES, params)
    theirs = client.raw_request("get", StripeList.INVOICES.path, **params).data

    assert ours.data == theirs["data"] and len(ours.data) > 5
    assert type(ours.data[0]) is dict and type(ours.data[0]["lines"]) is dict  # plain JSON, not OrderedDicts
    with pytest.raises(stripe.InvalidRequestError) as ours_error:
        stripe_api.retrieve(StripeList.CUSTOMERS, "cus_missing")
    with pytest.raises(stripe.InvalidRequestError) as theirs_error:
        client.raw_request("get", "/v1/customers/cus_missing")
    assert ours_error.value.http_status == theirs_error.value.http_status == 404
    assert ours_error.value.code == theirs_error.value.code


def test_a_plain_429_from_the_rate_limiter_is_retried_until_it_passes(emulator: RunningStripeEmulator) -> None:
    # stripe-python itself never retries a 429 without Stripe-Should-Retry (docs/sources.md#stripe-rate-limits); the
    # adapter does.
    emulator.server.set_rate_limit(5, 1)
    stripe_api = api(emulator, RetryPolicy(max_attempts=30, base_wait_s=0.05, max_wait_s=0.3, reserve_s=0.0))

    pages = [stripe_api.list_page(StripeList.PRODUCTS, {}) for _ in range(6)]

    assert all(page.data for page in pages)
    assert emulator.server.counter.total(429) > 0
    assert stripe_api.stats.retries == emulator.server.counter.total(429)


def test_a_request_failing_for_good_gives_up_before_the_time_budget_runs_out(emulator: RunningStripeEmulator) -> None:
    emulator.server.set_faults("500:1.0", seed=1)
    policy = RetryPolicy(max_attempts=1000, base_wait_s=0.1, max_wait_s=0.4, reserve_s=1.0)
    stripe_api = api(emulator, policy, seconds=2.0)

    with pytest.raises(stripe.APIError):
        stripe_api.list_page(StripeList.CUSTOMERS, {})

    # Stopped by the budget (2 s, 1 s kept in reserve), long before the attempt limit.
    assert 1 <= stripe_api.stats.requests < 20


def test_a_client_error_is_not_retried(emulator: RunningStripeEmulator) -> None:
    stripe_api = api(emulator, RetryPolicy(base_wait_s=0.01))

    with pytest.raises(stripe.InvalidRequestError):
        stripe_api.retrieve(StripeList.CUSTOMERS, "cus_doesnotexist")

    assert stripe_api.stats.requests == 1 and stripe_api.stats.retries == 0
