"""One Stripe list read in windows side by side, against the Stripe emulator with latency: every object once, in
about the pages a walk one page after another costs, several requests at a time, and a stop that a resume from
the windows left finishes exactly."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from chartmogul_sync.config import Settings
from chartmogul_sync.sources.stripe.client import (
    RequestLimiter,
    StripeApi,
    StripeList,
    TimeBudget,
    make_stripe_client,
)
from chartmogul_sync.sources.stripe.windows import MIN_WINDOW_PAGES, ListSpec, ListWindow, WindowedLists
from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator import RunningStripeEmulator, start

LANES = 8


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account(customers=400, months=18, seed=5)


@pytest.fixture
def emulator(account: Account) -> Iterator[RunningStripeEmulator]:
    with start(account, rate_limit=None) as running:
        running.server.set_latency(0.03)
        yield running


def stripe_api(emulator: RunningStripeEmulator) -> StripeApi:
    settings = Settings(stripe_api_base=emulator.base_url)
    client = make_stripe_client(settings, "sk_test_windows")
    limiter = RequestLimiter(requests_per_second=1_000, max_connections=LANES)
    return StripeApi(client, TimeBudget.of_seconds(120), limiter=limiter)


def invoices_lister(api: StripeApi, windows: list[ListWindow], floor: int) -> WindowedLists:
    invoices = ListSpec(
        "invoices", lambda query: api.list_page(StripeList.INVOICES, query), {"status": "paid"}, windows, floor
    )
    return WindowedLists([invoices], lanes=LANES)


def test_a_list_read_in_windows_gives_every_object_once_for_about_the_pages_of_one_walk(
    emulator: RunningStripeEmulator, account: Account
) -> None:
    api = stripe_api(emulator)
    expected = [obj["id"] for obj in api.list_all(StripeList.INVOICES, {"status": "paid"})]
    one_walk = math.ceil(len(expected) / 100)
    assert one_walk >= 3 * MIN_WINDOW_PAGES  # enough pages to be cut several times
    emulator.server.counter.reset()
    oldest_customer = min(c.created for c in account.store.customers)

    lister = invoices_lister(api, [ListWindow()], floor=oldest_customer)
    read = [obj["id"] for _, page in lister.pages() for obj in page.data]

    assert lister.finished() and lister.windows("invoices") == []
    assert sorted(read) == sorted(expected) and len(read) == len(set(read))
    asked = emulator.server.counter.count("GET /v1/invoices", 200)
    assert asked <= one_walk + one_walk // MIN_WINDOW_PAGES + 1
    # Side by side: as many windows as halving allows while each half keeps MIN_WINDOW_PAGES pages (4 at most of
    # these 40-odd pages; a list of hundreds of pages fills every lane).
    assert emulator.server.request_report()["peak_requests_in_progress"] >= 3


def test_a_stopped_list_resumed_from_its_windows_reads_exactly_what_was_left(
    emulator: RunningStripeEmulator, account: Account
) -> None:
    api = stripe_api(emulator)
    expected = sorted(obj["id"] for obj in api.list_all(StripeList.INVOICES, {"status": "paid"}))
    oldest_customer = min(c.created for c in account.store.customers)

    first = invoices_lister(api, [ListWindow()], floor=oldest_customer)
    before: list[str] = []
    for _, page in first.pages():
        before.extend(obj["id"] for obj in page.data)
        if len(before) >= 1_000:
            first.stop()  # the hand-over: the pages in flight still come
    left = first.windows("invoices")
    assert not first.finished() and left  # stopped with windows still to read
    # What a continuation gets: the windows as the checkpoint stores them.
    resumed_windows = [ListWindow.model_validate_json(w.model_dump_json()) for w in left]

    resumed = invoices_lister(api, resumed_windows, oldest_customer)
    after = [obj["id"] for _, page in resumed.pages() for obj in page.data]

    assert sorted(before + after) == expected
    assert len(before) + len(after) == len(expected)  # nothing twice
