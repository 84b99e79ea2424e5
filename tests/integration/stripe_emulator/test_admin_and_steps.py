"""Admin endpoints: clock, scenario steps and state, as incremental-sync tests use them."""

from __future__ import annotations

import requests

from localdev.scenarios import generate_account
from localdev.stripe_emulator import start

from .conftest import client_for


def test_a_scenario_step_over_http_shows_up_in_events_and_objects() -> None:
    account = generate_account(customers=40, months=12, seed=5)
    customer = account.customers_with("monthly")[0]
    with start(account, rate_limit=None) as emulator:
        client = client_for(emulator)
        before = {e.id for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}
        answer = requests.post(
            f"{emulator.base_url}/_admin/scenario-steps", json={"kind": "cancel", "customer": customer}, timeout=5
        )
        assert answer.status_code == 200
        step = answer.json()
        assert [e["type"] for e in step["events"]] == ["customer.subscription.deleted"]
        after = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
        new = [e for e in after if e.id not in before]
        assert [e.type for e in new] == ["customer.subscription.deleted"]
        assert new[0].data.object.customer == customer and new[0].data.object.status == "canceled"
        subs = client.v1.subscriptions.list({"customer": customer, "status": "all"}).data
        assert [s.status for s in subs] == ["canceled"]
        truth = requests.get(f"{emulator.base_url}/_admin/ground-truth", timeout=10).json()
        assert truth["customers"][customer]["cancellations"]
        bad = requests.post(f"{emulator.base_url}/_admin/scenario-steps", json={"kind": "explode"}, timeout=5)
        assert bad.status_code == 400


def test_advancing_the_clock_renews_subscriptions_and_moves_event_retention() -> None:
    account = generate_account(customers=40, months=12, seed=5)
    with start(account, rate_limit=None) as emulator:
        client = client_for(emulator)
        invoices_before = len(list(client.v1.invoices.list({"limit": 100}).auto_paging_iter()))
        start_now = requests.get(f"{emulator.base_url}/_admin/clock", timeout=5).json()["now"]
        moved = requests.post(f"{emulator.base_url}/_admin/clock", json={"days": 35}, timeout=5).json()
        assert moved["now"] == start_now + 35 * 86_400
        invoices_after = list(client.v1.invoices.list({"limit": 100}).auto_paging_iter())
        assert len(invoices_after) > invoices_before  # monthly renewals happened in the 35 days
        events = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
        assert events and min(e.created for e in events) >= moved["now"] - 30 * 86_400
        state = requests.get(f"{emulator.base_url}/_admin/state", timeout=5).json()
        assert state["now"] == moved["now"] and state["objects"]["invoices"] == len(invoices_after)
        requests.post(f"{emulator.base_url}/_admin/reset", timeout=30)
        assert requests.get(f"{emulator.base_url}/_admin/clock", timeout=5).json()["now"] == start_now
        assert len(list(client.v1.invoices.list({"limit": 100}).auto_paging_iter())) == invoices_before
