"""Generate a deterministic, scenario-rich Stripe account with its ground truth.

    account = generate_account(customers=200, months=24, seed=7)
    account.store                 # the emulator's store (serve it with localdev.stripe_emulator.start)
    account.ground_truth()        # expected ChartMogul objects and MRR per customer and month (truth.py)
    account.apply_step({"kind": "upgrade", "customer": "cus_..."})   # after a backfill (steps.py)

The first customers take every profile of `profiles.PROFILES` once (so any account of at least that many
customers and `MIN_MONTHS` months covers every case of docs/sources.md#stripe-scenarios); the rest draw profiles by
weight. All randomness comes from `random.Random` seeded from `seed`, all time from the simulated clock: the same
arguments give a byte-identical account (`Account.dump()`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from localdev.scenarios import profiles, steps, truth
from localdev.scenarios.calendar import DAY, add_months, timestamp
from localdev.scenarios.catalog import Catalog, build_catalog
from localdev.scenarios.engine import CustomerBiller, Simulation
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.ids import IdFactory
from localdev.stripe_emulator.render import render
from localdev.stripe_emulator.store import INDEXED_FIELDS, StripeStore

DEFAULT_NOW = timestamp(2026, 11, 1)  # a fixed "now": never wall time
COUNTRIES = {"usd": "US", "eur": "DE", "gbp": "GB", "cad": "CA", "aud": "AU"}
OTHER_CURRENCIES = ("eur", "gbp", "cad", "aud")
FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Barbara", "Dennis", "Frances", "Ken", "Margaret", "Edsger",
    "Radia", "Tim", "Hedy", "John", "Karen", "Donald", "Leslie", "Niklaus", "Sophie", "Guido",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Ritchie", "Allen", "Thompson", "Hamilton",
    "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "Backus", "Jones", "Knuth", "Lamport", "Wirth", "Wilson",
)  # fmt: skip
COMPANY_SUFFIXES = ("Labs", "Analytics", "Cloud", "Systems", "Studio", "Works")


@dataclass(frozen=True)
class AccountSpec:
    customers: int
    months: int
    seed: int
    now: int

    @property
    def window_start(self) -> int:
        return add_months(self.now, -self.months)


@dataclass
class Account:
    """A generated Stripe account: the store the emulator serves, and what a correct import of it yields."""

    spec: AccountSpec
    store: StripeStore
    sim: Simulation
    catalog: Catalog
    scenarios: dict[str, list[str]] = field(default_factory=dict)  # customer id -> profile names
    steps_applied: list[dict[str, Any]] = field(default_factory=list)

    # ---- the API the emulator and the tests use -------------------------------------------------------

    def ground_truth(self) -> dict[str, Any]:
        return truth.build(self.sim.ledgers, self.store, self.spec, self.store.now)

    def apply_step(self, step: dict[str, Any]) -> dict[str, Any]:
        result = steps.apply(self, step)
        self.steps_applied.append(step)
        return result

    def advance_to(self, now: int) -> None:
        """Move the clock: renewals, retries and scheduled changes up to `now` happen, then `now` is set."""
        if now < self.store.now:
            raise ValueError("the clock only moves forward")
        self.sim.run_until(now)
        self.store.now = now

    def reset(self) -> None:
        """Back to the generated state (the same seed regenerates the same account)."""
        fresh = _generate(self.spec)
        self.store, self.sim, self.catalog, self.scenarios = fresh.store, fresh.sim, fresh.catalog, fresh.scenarios
        self.steps_applied = []

    def customers_with(self, scenario: str) -> list[str]:
        return [customer for customer, names in self.scenarios.items() if scenario in names]

    def dump(self, include_events_data: bool = False) -> bytes:
        """Every object as the API renders it now, plus the events, as canonical JSON (determinism checks)."""
        store = self.store
        objects: dict[str, list[Any]] = {}
        for name in INDEXED_FIELDS:
            collection = store.collection(name)
            if name == "events" and not include_events_data:
                objects[name] = [
                    [e.id, e.created, e.type, e.object_id, e.previous_attributes]
                    for e in store.events.newest_first()
                    if isinstance(e, r.Event)
                ]
                continue
            objects[name] = [render(store, name, record, store.now) for record in collection.newest_first()]
        return json.dumps(
            {"now": store.now, "objects": objects, "truth": self.ground_truth()}, sort_keys=True, separators=(",", ":")
        ).encode()


def generate_account(customers: int = 200, months: int = 24, seed: int = 7, now: int = DEFAULT_NOW) -> Account:
    """A simulated account of `customers` customers over the `months` before `now`."""
    if customers < 1 or months < 1:
        raise ValueError("an account needs at least one customer and one month")
    return _generate(AccountSpec(customers, months, seed, now))


def _generate(spec: AccountSpec) -> Account:
    store = StripeStore(now=spec.now)
    ids = IdFactory(random.Random(f"ids/{spec.seed}"))
    window_start = spec.window_start
    catalog_created = window_start - 30 * DAY
    catalog = build_catalog(ids, catalog_created)
    sim = Simulation(store, ids, catalog)
    _add_catalog(sim, catalog, catalog_created)
    account = Account(spec, store, sim, catalog)
    mix = random.Random(f"mix/{spec.seed}")
    names = list(profiles.PROFILES)
    weights = [weight for _, _, weight in profiles.PROFILES.values()]
    for index in range(spec.customers):
        profile = names[index] if index < len(names) else mix.choices(names, weights)[0]
        _schedule_customer(account, index, profile)
    sim.run_until(spec.now)
    return account


def _add_catalog(sim: Simulation, catalog: Catalog, created: int) -> None:
    store = sim.store
    for product in catalog.products.values():
        store.products.add(product)
        sim.emit(created, "product.created", "products", product.id)
    for price in catalog.all_prices():
        store.prices.add(price)
        sim.emit(created, "price.created", "prices", price.id)
    for coupon in catalog.coupons.values():
        store.coupons.add(coupon)
        sim.emit(created, "coupon.created", "coupons", coupon.id)
    for rate in catalog.tax_rates.values():
        store.tax_rates.add(rate)
        sim.emit(created, "tax_rate.created", "tax_rates", rate.id)


def _schedule_customer(account: Account, index: int, profile: str) -> None:
    """Create the customer when its time comes, then run its profile from there."""
    spec, sim = account.spec, account.sim
    rng = random.Random(f"customer/{spec.seed}/{index}")
    build, needed_currency, _ = profiles.PROFILES[profile]
    currency = needed_currency or ("usd" if rng.random() < 0.75 else rng.choice(OTHER_CURRENCIES))
    window = spec.now - spec.window_start
    if profile in profiles.RECENT_START_DAYS:
        start = spec.now - profiles.RECENT_START_DAYS[profile] * DAY + rng.randrange(DAY)
    elif index < len(profiles.PROFILES):
        start = spec.window_start + rng.randrange(max(window // 8, DAY))  # early: room for the whole story
    else:
        start = spec.window_start + rng.randrange(max(window - 30 * DAY, DAY))
    start = max(start, spec.window_start)
    created = start - rng.randrange(3 * DAY)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    prefix = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4)) + f"{index % 10_000:04d}"

    def begin(at: int) -> None:
        customer = r.Customer(
            id=sim.ids.new("cus"),
            created=at,
            name=f"{first} {last} {rng.choice(COMPANY_SUFFIXES)}",
            email=f"{first.lower()}.{last.lower().replace('-', '')}.{index}@example.com",
            country=COUNTRIES[currency],
            invoice_prefix=prefix,
            metadata={"profile": profile},
        )
        biller = CustomerBiller(sim, customer, rng, [profile])
        account.scenarios[customer.id] = [profile]
        context = profiles.Context(sim, account.catalog, biller, rng, start, spec.now, currency)
        sim.at(start, lambda when: build(context))

    sim.at(created, begin)
