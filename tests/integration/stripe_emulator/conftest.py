"""Fixtures: the Stripe emulator on loopback, driven through the unmodified `stripe` client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator import RunningStripeEmulator, start

TEST_KEY = "sk_test_emulator"


def client_for(emulator: RunningStripeEmulator, key: str = TEST_KEY, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": emulator.base_url}, max_network_retries=retries)


def error_code(error: stripe.StripeError) -> object:
    """The `code` of Stripe's error body (the client leaves `RateLimitError.code` unset)."""
    body = error.json_body
    assert isinstance(body, dict)
    return body["error"].get("code")


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account()  # 200 customers, 24 months: every scenario of docs/sources.md#stripe-scenarios


@pytest.fixture(scope="module")
def emulator(account: Account) -> Iterator[RunningStripeEmulator]:
    with start(account, rate_limit=None) as running:
        yield running


@pytest.fixture(scope="module")
def client(emulator: RunningStripeEmulator) -> stripe.StripeClient:
    return client_for(emulator)
