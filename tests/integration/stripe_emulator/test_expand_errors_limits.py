"""`expand`, errors in Stripe's envelope, API keys and versions, rate limits and faults (docs/sources.md#stripe-expand,
#stripe-rate-limits)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
import stripe

from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator import RunningStripeEmulator, start

from .conftest import client_for, error_code


def test_expand_on_lists_and_retrieve(account: Account, client: stripe.StripeClient) -> None:
    discounted = next(i for i in account.store.invoices.values() if i.discounts and i.payment_intent)
    page = client.v1.invoices.list(
        {"customer": discounted.customer, "limit": 100, "expand": ["data.customer", "data.discounts", "data.payments"]}
    )
    invoice = next(i for i in page.data if i.id == discounted.id).to_dict()
    assert invoice["customer"]["object"] == "customer"
    assert invoice["discounts"][0]["object"] == "discount" and invoice["discounts"][0]["source"]["coupon"]
    assert invoice["payments"]["data"][0]["payment"]["payment_intent"] == discounted.payment_intent
    plain = client.v1.invoices.retrieve(discounted.id).to_dict()
    assert isinstance(plain["customer"], str)
    assert "payments" not in plain  # includable: absent unless expanded
    deep = client.v1.invoices.retrieve(discounted.id, {"expand": ["discounts.source.coupon"]}).to_dict()
    assert deep["discounts"][0]["source"]["coupon"]["object"] == "coupon"
    lines = client.v1.invoices.line_items.list(discounted.id, {"expand": ["data.pricing.price_details.price"]})
    assert lines.data[0].to_dict()["pricing"]["price_details"]["price"]["object"] == "price"
    subscription_id = deep["parent"]["subscription_details"]["subscription"]
    sub = client.v1.subscriptions.retrieve(subscription_id, {"expand": ["latest_invoice"]}).to_dict()
    assert sub["latest_invoice"]["object"] == "invoice"


def test_a_charges_refunds_are_absent_unless_expanded_and_then_embed_ten_and_page_on_in_the_refunds_list() -> None:
    # Its own account: refunds are added to one charge, beyond what any generated charge has.
    account = generate_account(customers=45, months=9, seed=3)
    customer = account.customers_with("refund_partial")[0]
    for _ in range(12):  # of its latest payment
        account.apply_step({"kind": "refund", "customer": customer, "share": 0.05})
    store = account.store
    charge = max((c for c in store.charges.values() if c.customer == customer), key=lambda c: len(c.refunds))
    newest_first = [x.id for x in sorted((store.refunds.get(i) for i in charge.refunds), key=lambda x: -x.created)]
    assert len(newest_first) >= 12
    with start(account, rate_limit=None) as emulator:
        client = client_for(emulator)
        plain = client.v1.charges.retrieve(charge.id).to_dict()
        page = client.v1.charges.list({"customer": customer, "limit": 100, "expand": ["data.refunds"]})

        assert "refunds" not in plain and plain["amount_refunded"] > 0
        refunds = next(c for c in page.data if c.id == charge.id).to_dict()["refunds"]
        assert [x["id"] for x in refunds["data"]] == newest_first[:10] and refunds["has_more"] is True
        assert refunds["url"] == f"/v1/charges/{charge.id}/refunds"
        assert refunds["data"][0] == client.v1.refunds.retrieve(newest_first[0]).to_dict()
        rest = client.v1.refunds.list({"charge": charge.id, "starting_after": newest_first[9]})
        assert [x.id for x in rest.data] == newest_first[10:] and rest.has_more is False
        unrefunded = next(c for c in page.data if not c.amount_refunded).to_dict()
        assert unrefunded["refunds"] == {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{unrefunded['id']}/refunds",
        }


def test_expand_refuses_unknown_paths_and_depth_over_four(client: stripe.StripeClient, account: Account) -> None:
    invoice_id = next(iter(account.store.invoices.values())).id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.retrieve(invoice_id, {"expand": ["total"]})
    assert caught.value.param == "expand"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.list({"expand": ["customer"]})  # lists need the data. prefix
    with pytest.raises(stripe.InvalidRequestError) as too_deep:
        client.v1.invoice_payments.list(
            {
                "expand": [
                    "data.invoice.customer.invoice_settings.default_payment_method",
                    "data.invoice.subscription.latest_invoice.customer.x",
                ]
            }
        )
    assert too_deep.value.http_status == 400 and too_deep.value.param == "expand"
    assert "more than 4 levels" in str(too_deep.value.user_message)
    # Levels are the path's parts, a list's `data` included (docs.stripe.com/api/expanding_objects).
    with pytest.raises(stripe.InvalidRequestError, match="more than 4 levels"):
        client.v1.invoices.retrieve(invoice_id, {"expand": ["lines.data.pricing.price_details.price"]})
    with pytest.raises(stripe.InvalidRequestError, match="more than 4 levels"):
        client.v1.invoices.list({"expand": ["data.lines.data.discounts.source"]})
    deepest = client.v1.invoices.list({"limit": 1, "expand": ["data.lines.data.discounts"]})
    assert len(deepest.data) == 1


def test_errors_use_stripe_s_envelope(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.retrieve("in_doesnotexist")
    error = missing.value
    assert error.http_status == 404 and error.code == "resource_missing" and error.param == "id"
    assert isinstance(error.json_body, dict) and error.json_body["error"]["type"] == "invalid_request_error"
    assert error.request_id and error.request_id.startswith("req_")
    for bad in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as limit:
            client.v1.customers.list({"limit": bad})
        assert limit.value.http_status == 400 and limit.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as cursor:
        client.v1.customers.list({"starting_after": "cus_nope"})
    assert cursor.value.param == "starting_after"
    with pytest.raises(stripe.InvalidRequestError) as both:
        client.v1.customers.list({"starting_after": "cus_a", "ending_before": "cus_b"})
    assert both.value.http_status == 400


def test_api_keys_and_modes(emulator: RunningStripeEmulator, account: Account) -> None:
    with pytest.raises(stripe.AuthenticationError):
        client_for(emulator, key="sk_live_wrongmode").v1.customers.list()
    with pytest.raises(stripe.AuthenticationError):
        client_for(emulator, key="pk_test_publishable").v1.customers.list()
    answer = requests.get(f"{emulator.base_url}/v1/customers", timeout=5)
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "invalid_request_error"
    with start(account.store, mode="live", rate_limit=None) as live:
        customer = client_for(live, key="sk_live_emulator").v1.customers.list({"limit": 1}).data[0]
        assert customer.livemode is True
        with pytest.raises(stripe.AuthenticationError):
            client_for(live).v1.customers.list()
    account.store.livemode = False


def test_stripe_version_header_is_honoured(emulator: RunningStripeEmulator, client: stripe.StripeClient) -> None:
    page = client.v1.customers.list({"limit": 1}, {"stripe_version": "2026-09-30.endive"})
    assert page.last_response is not None
    assert page.last_response.headers["Stripe-Version"] == "2026-09-30.endive"
    with pytest.raises(stripe.InvalidRequestError) as old:
        client.v1.customers.list({"limit": 1}, {"stripe_version": "2020-08-27"})
    assert "2020-08-27" in old.value.user_message


def test_rate_limit_answers_a_plain_429_that_the_client_does_not_retry() -> None:
    small = generate_account(customers=5, months=2, seed=2)
    with start(small, rate_limit=1.0) as limited:  # one request per second, a bucket of one
        client = client_for(limited, retries=2)
        outcomes = []
        for _ in range(8):  # a bounded burst; only a client slower than 1 request/s would see no 429
            try:
                client.v1.customers.list({"limit": 1})
                outcomes.append("ok")
            except stripe.RateLimitError as exc:
                assert exc.http_status == 429 and error_code(exc) == "rate_limit"
                assert exc.headers is not None and "Stripe-Should-Retry" not in exc.headers
                outcomes.append("429")
        total = limited.server.request_report()["total"]
    assert "429" in outcomes and outcomes[0] == "ok"
    assert total == len(outcomes)  # not retried: one request per call


def test_stripe_s_limits_are_25_per_second_in_test_mode_and_100_in_live_and_25_per_endpoint_in_both() -> None:
    small = generate_account(customers=5, months=2, seed=2)
    with start(small, rate_limit="stripe") as test_mode:
        assert test_mode.server.request_report() is not None and test_mode.server.bucket.rate == 25.0
        assert test_mode.server.route_buckets.rate == 25.0
    with start(small, mode="live", rate_limit="stripe") as live:
        assert (live.server.bucket.rate, live.server.route_buckets.rate) == (100.0, 25.0)
    with start(small) as unlimited:
        assert (unlimited.server.bucket.rate, unlimited.server.route_buckets.rate) == (None, None)
    with start(small, rate_limit=60.0) as global_only:  # a number is the global rate only
        assert (global_only.server.bucket.rate, global_only.server.route_buckets.rate) == (60.0, None)
    with start(small, rate_limit="stripe", endpoint_rate_limit=0) as without_endpoints:
        assert (without_endpoints.server.bucket.rate, without_endpoints.server.route_buckets.rate) == (25.0, None)


def _outcomes(calls: list[Callable[[], object]]) -> list[str]:
    """ "ok" or "429" per call, in order; each 429 is Stripe's plain rate-limit error (the client does not retry it)."""
    outcomes = []
    for call in calls:
        try:
            call()
            outcomes.append("ok")
        except stripe.RateLimitError as exc:
            assert exc.http_status == 429 and error_code(exc) == "rate_limit"
            assert exc.headers is not None and "Stripe-Should-Retry" not in exc.headers
            outcomes.append("429")
    return outcomes


def test_each_endpoint_has_its_own_25_per_second_besides_the_global_limit() -> None:
    """docs.stripe.com/rate-limits: "API endpoints have a default limit of 25 requests per second", each named operation
    its own. Live mode, so the global limit (100/s) leaves room: 50 quick calls to one endpoint pass its 25/s, the same
    50 over two endpoints do not."""
    small = generate_account(customers=5, months=2, seed=2)
    with start(small, mode="live", rate_limit="stripe") as live:
        client = client_for(live, key="sk_live_emulator", retries=2)
        started = time.monotonic()
        one_endpoint = _outcomes([lambda: client.v1.customers.list({"limit": 1})] * 50)
        elapsed = time.monotonic() - started
        assert live.server.request_report()["total"] == 50  # a 429 is not retried
        live.server.reset()  # full buckets again
        customers = [lambda: client.v1.customers.list({"limit": 1})] * 25
        invoices = [lambda: client.v1.invoices.list({"limit": 1})] * 25
        two_endpoints = _outcomes([call for pair in zip(customers, invoices, strict=True) for call in pair])
    admitted = one_endpoint.count("ok")
    # The bucket holds 25 and refills 25 per second: exact bounds whatever the machine's speed.
    assert one_endpoint[:25] == ["ok"] * 25 and admitted <= 25 + 25 * elapsed + 1
    assert "429" in one_endpoint, f"50 calls in {elapsed:.2f} s were all admitted"
    assert two_endpoints == ["ok"] * 50


def test_retrieving_different_objects_counts_against_one_endpoint() -> None:
    """docs.stripe.com/rate-limits: requests to GET /v1/payment_intents/{id} for different ids share one limit."""
    small = generate_account(customers=5, months=2, seed=2)
    ids = sorted(customer.id for customer in small.store.customers.values())
    with start(small, endpoint_rate_limit=5) as emulator:  # no global limit; 5 requests/s per endpoint
        client = client_for(emulator)
        started = time.monotonic()
        retrieves = _outcomes([lambda one=one: client.v1.customers.retrieve(one) for one in ids * 4])
        elapsed = time.monotonic() - started
        counts = emulator.server.request_report()["routes"]["GET /v1/customers/{object_id}"]
    assert retrieves[:5] == ["ok"] * 5 and retrieves.count("ok") <= 5 + 5 * elapsed + 1
    assert counts == {"200": retrieves.count("ok"), "429": retrieves.count("429")} and counts["429"] > 0


def test_the_endpoint_limit_changes_at_run_time() -> None:
    small = generate_account(customers=5, months=2, seed=2)
    with start(small) as emulator, requests.Session() as admin:
        client = client_for(emulator)
        limits = emulator.base_url + "/_admin/rate-limit"
        assert admin.get(limits, timeout=5).json()["route_rate"] is None  # in-process: off unless asked for
        assert _outcomes([lambda: client.v1.invoices.list({"limit": 1})] * 30) == ["ok"] * 30
        assert admin.put(limits, json={"route_rate": 5}, timeout=5).json()["route_rate"] == 5
        started = time.monotonic()
        limited = _outcomes([lambda: client.v1.invoices.list({"limit": 1})] * 20)
        elapsed = time.monotonic() - started
        assert limited[:5] == ["ok"] * 5 and limited.count("ok") <= 5 + 5 * elapsed + 1 and "429" in limited
        admin.put(limits, json={"route_rate": None}, timeout=5)
        assert _outcomes([lambda: client.v1.invoices.list({"limit": 1})] * 30) == ["ok"] * 30


def test_injected_faults_lock_timeout_is_retried_and_500_surfaces() -> None:
    small = generate_account(customers=5, months=2, seed=2)
    with start(small, rate_limit=None, faults="429:1.0") as faulty:
        client = client_for(faulty, retries=2)
        with pytest.raises(stripe.RateLimitError) as locked:
            client.v1.customers.list({"limit": 1})
        assert error_code(locked.value) == "lock_timeout"
        assert faulty.server.request_report()["total"] == 3  # Stripe-Should-Retry: true → 2 retries
        faulty.server.set_faults("500:1.0", seed=1)
        with pytest.raises(stripe.APIError) as broken:
            client_for(faulty).v1.customers.list({"limit": 1})
        assert broken.value.http_status == 500
        faulty.server.set_faults("", seed=1)
        assert client_for(faulty).v1.customers.list({"limit": 1}).data


def test_refuses_parameters_stripe_does_not_define(client: stripe.StripeClient, account: Account) -> None:
    """Stripe's params (stripe/params/_refund_list_params.py...): anything else is a 400, never ignored."""
    refunded = next(iter(account.store.refunds.values()))
    # `customer` is not a refunds filter: answered as if absent, it would list every refund of the account.
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.refunds.list({"customer": refunded.customer})  # type: ignore[typeddict-unknown-key]
    error = unknown.value
    assert error.http_status == 400 and error.param == "customer" and error_code(error) == "parameter_unknown"
    assert str(error.user_message) == "Received unknown parameter: customer"
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.invoices.list({"created": {"after": 1}})  # type: ignore[typeddict-unknown-key]
    assert nested.value.param == "created[after]" and error_code(nested.value) == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as on_lines:
        client.v1.invoices.line_items.list(refunded.id, {"status": "paid"})  # type: ignore[typeddict-unknown-key]
    assert on_lines.value.param == "status"
    with pytest.raises(stripe.InvalidRequestError) as on_retrieve:
        client.v1.customers.retrieve(refunded.customer, {"limit": 3})  # type: ignore[typeddict-unknown-key]
    assert on_retrieve.value.param == "limit"


def test_refuses_values_outside_an_enum(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as status:
        client.v1.subscriptions.list({"status": "cancelled"})  # British spelling: not Stripe's
    assert status.value.http_status == 400 and status.value.param == "status"
    assert "must be one of active, all, canceled" in str(status.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as nested:
        client.v1.prices.list({"recurring": {"interval": "fortnight"}})
    assert nested.value.param == "recurring[interval]"
    with pytest.raises(stripe.InvalidRequestError) as boolean:
        client.v1.invoice_items.list({"pending": "maybe"})  # type: ignore[typeddict-item]
    assert boolean.value.param == "pending"
    with pytest.raises(stripe.InvalidRequestError) as not_a_hash:
        client.v1.prices.list({"recurring": "month"})  # type: ignore[typeddict-item]
    assert not_a_hash.value.param == "recurring"


def test_refuses_stripe_parameters_it_does_not_implement(client: stripe.StripeClient) -> None:
    """A filter Stripe has and the emulator lacks would be silently ignored: it is refused, saying why."""
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        client.v1.invoices.list({"due_date": {"gte": 1}})
    assert unsupported.value.http_status == 400 and unsupported.value.param == "due_date"
    assert "does not implement" in str(unsupported.value.user_message)
