"""The billing simulation: a clock-ordered agenda that behaves like Stripe Billing for one account.

`Simulation` runs callbacks in time order (a heap keyed by `(time, sequence)`, so equal times keep their
scheduling order and the run is deterministic). `CustomerBiller` and `SubscriptionBiller` do what Stripe does
for a customer and a subscription: periods from the billing anchor, invoices with lines, discounts and taxes,
prorations, payment attempts and retries, refunds, credit notes, cancellations, pauses, schedules, and the
events of each change (docs/sources.md#stripe-events for event names). Each billed line, transaction and cancellation
also goes into the intent ledger (`ledger.py`) that the ground truth is computed from.

Stripe behaviours modelled (docs/sources.md#stripe-object-mapping, #stripe-versions and
docs.stripe.com/billing/subscriptions/*):
- classic billing mode: proration amounts are net of percentage discounts and not discountable;
- an `always_invoice` change invoices its prorations at once (billing_reason `subscription_update`); a
  `create_prorations` change leaves pending invoice items for the next renewal invoice;
- metered items are billed in arrears for the period that just ended;
- renewal invoices are finalized an hour after creation; subscription-create invoices at once;
- smart retries: failed charges are retried after 3, 5 and 7 days; then the invoice is marked uncollectible
  or the subscription becomes `unpaid`, as the scenario says; an unpaid subscription's invoices are finalized
  but not attempted;
- `pause_collection` with `keep_as_draft` leaves renewal invoices as drafts; `cancel_at_period_end` ends the
  subscription at the period end without a renewal invoice; deleting a customer cancels its subscriptions.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from localdev.scenarios import ledger as lg
from localdev.scenarios.calendar import DAY, add_months, format_date, period_boundary
from localdev.scenarios.catalog import Catalog
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.ids import IdFactory
from localdev.stripe_emulator.store import StripeStore

HOUR = 3_600
# State changes of one object get distinct seconds: an event renders its object as of its second (render.py),
# so a draft created, finalized and paid within one second would show as paid in all three events.
STEP = 1
PAYMENT_DELAY = 2  # a charge completes two seconds after the invoice is finalized
RETRY_OFFSETS = (3 * DAY, 5 * DAY, 7 * DAY)  # after the first failed attempt

# What happens to one invoice after it is finalized.
Outcome = Literal[
    "pay",  # charged at finalization
    "fail_then_pay",  # first charge declined, the retry 3 days later succeeds
    "uncollectible",  # every retry declined, then marked uncollectible
    "unpaid",  # every retry declined, then the subscription becomes unpaid
    "send_pay",  # send_invoice: the customer pays the hosted invoice 10 days later
    "send_void",  # send_invoice: never paid, voided 20 days later
    "send_credit_then_pay",  # send_invoice: a pre-payment credit note after 2 days, paid after 8
    "no_attempt",  # unpaid subscription: finalized, not attempted
]


def round_half_up(value: float) -> int:
    """Rounds halves away from zero (credits round like debits)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


class Simulation:
    """The simulated clock: everything that happens in the account is an agenda entry run in time order."""

    def __init__(self, store: StripeStore, ids: IdFactory, catalog: Catalog) -> None:
        self.store = store
        self.ids = ids
        self.catalog = catalog
        self.ledgers: dict[str, lg.CustomerLedger] = {}
        self.billers: dict[str, CustomerBiller] = {}
        self._agenda: list[tuple[int, int, Callable[[int], None]]] = []
        self._sequence = itertools.count()
        self._product_names = {product.id: product.name for product in catalog.products.values()}

    def catalog_name(self, price: r.Price) -> str:
        """How invoice lines name a price: the product name (Stripe writes `1 × Pro (at $49.00 / month)`)."""
        return self._product_names.get(price.product, price.product)

    def at(self, when: int, action: Callable[[int], None]) -> None:
        heapq.heappush(self._agenda, (when, next(self._sequence), action))

    def run_until(self, until: int) -> None:
        """Run every agenda entry due at or before `until`; later ones wait for the clock to get there."""
        agenda = self._agenda
        while agenda and agenda[0][0] <= until:
            when, _, action = heapq.heappop(agenda)
            action(when)

    def emit(
        self, when: int, event_type: str, resource: str, object_id: str, previous: dict[str, Any] | None = None
    ) -> None:
        self.store.events.add(r.Event(self.ids.new("evt"), when, event_type, resource, object_id, previous))


@dataclass
class LineSpec:
    """A line to bill, before discount and tax are worked out."""

    price: r.Price
    quantity: int
    gross: int
    period: tuple[int, int]
    description: str
    item: r.SubscriptionItem | None = None
    invoice_item: r.InvoiceItem | None = None
    proration: bool = False


class CustomerBiller:
    def __init__(self, sim: Simulation, customer: r.Customer, rng: random.Random, scenarios: list[str]) -> None:
        self.sim = sim
        self.customer = customer
        self.rng = rng
        self.invoice_count = 0
        self.subscriptions: list[SubscriptionBiller] = []
        self.ledger = lg.CustomerLedger(
            customer.id,
            customer.name,
            customer.email,
            customer.country,
            customer.created,
            list(scenarios),
            dict(customer.metadata),
        )
        sim.store.customers.add(customer)
        sim.ledgers[customer.id] = self.ledger
        sim.billers[customer.id] = self
        sim.emit(customer.created, "customer.created", "customers", customer.id)

    def subscribe(
        self,
        at: int,
        items: list[tuple[r.Price, int | None]],
        *,
        trial_days: int = 0,
        trial_ends_paused: bool = False,
        coupon: str | None = None,
        item_coupons: dict[int, str] | None = None,
        tax_rate: str | None = None,
        send_invoice_days: int | None = None,
        outcomes: dict[int, Outcome] | None = None,
        one_time_fees: list[r.Price] | None = None,
        schedule: list[tuple[int, list[tuple[r.Price, int | None]]]] | None = None,
    ) -> SubscriptionBiller:
        """Start a subscription at `at` and bill it until the simulation stops.

        `coupon` discounts the subscription; `item_coupons` (item index -> coupon) discount single items.
        """
        sub = SubscriptionBiller(
            self,
            at,
            items,
            trial_days=trial_days,
            trial_ends_paused=trial_ends_paused,
            coupon=coupon,
            item_coupons=item_coupons or {},
            tax_rate=tax_rate,
            send_invoice_days=send_invoice_days,
            outcomes=outcomes or {},
            one_time_fees=one_time_fees or [],
            schedule=schedule,
        )
        self.subscriptions.append(sub)
        return sub

    def delete(self, at: int) -> None:
        """Deleting a Stripe customer cancels its subscriptions at once."""
        for sub in self.subscriptions:
            if not sub.ended:
                sub.cancel_now(at, reason="cancellation_requested")
        self.customer.deleted_at = at
        self.ledger.deleted_at = at
        self.sim.emit(at, "customer.deleted", "customers", self.customer.id)

    def next_invoice_number(self) -> str:
        self.invoice_count += 1
        return f"{self.customer.invoice_prefix}-{self.invoice_count:04d}"


@dataclass
class _Coupon:
    discount: r.Discount
    coupon: r.Coupon
    used: int = 0


@dataclass
class _SchedulePlan:
    record: r.SubscriptionSchedule
    # renewal period index -> the items from then on; the release index
    changes: dict[int, list[tuple[r.Price, int | None]]] = field(default_factory=dict)
    release_at_period: int = 0


class SubscriptionBiller:
    def __init__(
        self,
        owner: CustomerBiller,
        at: int,
        items: list[tuple[r.Price, int | None]],
        *,
        trial_days: int,
        trial_ends_paused: bool,
        coupon: str | None,
        item_coupons: dict[int, str],
        tax_rate: str | None,
        send_invoice_days: int | None,
        outcomes: dict[int, Outcome],
        one_time_fees: list[r.Price],
        schedule: list[tuple[int, list[tuple[r.Price, int | None]]]] | None,
    ) -> None:
        self.owner = owner
        self.sim = owner.sim
        sim, ids, store = self.sim, self.sim.ids, self.sim.store
        customer = owner.customer
        recurring = [price for price, _ in items if price.usage_type == "licensed"] or [items[0][0]]
        self.interval = recurring[0].interval
        self.interval_count = recurring[0].interval_count
        self.outcomes = outcomes
        self.trial_ends_paused = trial_ends_paused
        self.ended = False
        self.cancel_requested = False
        self.collection_paused: str | None = None
        self.pending: list[r.InvoiceItem] = []
        self.invoices: list[r.Invoice] = []
        # invoice id -> its payment intent and invoice payment (looking them up in the store would rebuild its
        # indexes after every insert while the account is being generated)
        self._payments: dict[str, tuple[r.PaymentIntent, r.InvoicePayment]] = {}
        self.tax = store.tax_rates.get(tax_rate) if tax_rate else None
        currency = items[0][0].currency
        customer.currency = customer.currency or currency
        trial_end = at + trial_days * DAY if trial_days else None
        self.anchor = trial_end or at
        self.period_index = -1 if trial_end else 0  # -1: the trial period before the anchor
        first_end = trial_end or period_boundary(at, self.interval, self.interval_count, 1)
        sub_id = ids.new("sub")
        self.items = [
            r.SubscriptionItem(ids.new("si"), at, sub_id, [r.ItemState(at, price.id, quantity)])
            for price, quantity in items
        ]
        self.record = r.Subscription(
            id=sub_id,
            created=at,
            customer=customer.id,
            currency=currency,
            collection_method="send_invoice" if send_invoice_days else "charge_automatically",
            items=[item.id for item in self.items],
            start_date=at,
            billing_cycle_anchor=self.anchor,
            periods=[(at, first_end)],
            statuses=[(at, "trialing" if trial_end else "active")],
            days_until_due=send_invoice_days,
            trial_start=at if trial_end else None,
            trial_end=trial_end,
            default_tax_rates=[tax_rate] if tax_rate else [],
        )
        self.coupon: _Coupon | None = None
        if coupon is not None:
            self.coupon = self._apply_coupon(at, coupon, None)
            self.record.discounts.append(self.coupon.discount.id)
        # Item-level coupons (forever ones: a `once` or `repeating` item coupon is not modelled), by item id.
        self.item_coupons: dict[str, _Coupon] = {}
        for index, item_coupon in sorted(item_coupons.items()):
            item = self.items[index]
            applied = self._apply_coupon(at, item_coupon, item.id)
            assert applied.coupon.duration == "forever" and applied.coupon.percent_off, item_coupon
            item.discounts.append(applied.discount.id)
            self.item_coupons[item.id] = applied
        store.subscriptions.add(self.record)
        for item in self.items:
            store.subscription_items.add(item)
        self.schedule: _SchedulePlan | None = None
        if schedule:
            self._create_schedule(at, schedule)
        owner.ledger.subscriptions.append(
            lg.BilledSubscription(sub_id, [item.id for item in self.items], trial_start=self.record.trial_start)
        )
        sim.emit(at, "customer.subscription.created", "subscriptions", sub_id)

        # The subscription-create invoice: the first period (or the $0 trial), plus one-off fees.
        specs = [self._period_line(item, (at, first_end), trial=bool(trial_end)) for item in self._licensed()]
        for fee in one_time_fees:
            specs.append(self._one_time_line(at, fee))
        self._bill(at, "subscription_create", specs, (at, at), finalize_after=STEP)
        if trial_end is not None and trial_end - 3 * DAY > at:
            sim.at(
                trial_end - 3 * DAY,
                lambda when: self._emit_if_live(when, "customer.subscription.trial_will_end", "subscriptions", sub_id),
            )
        sim.at(first_end, self._renew)

    def _apply_coupon(self, at: int, coupon_id: str, item_id: str | None) -> _Coupon:
        """The discount of `coupon_id` on the subscription (`item_id` None) or on one of its items, announced."""
        sim, store = self.sim, self.sim.store
        the_coupon = store.coupons.get(coupon_id)
        assert the_coupon is not None, coupon_id
        end = (
            add_months(at, the_coupon.duration_in_months)
            if the_coupon.duration == "repeating" and the_coupon.duration_in_months
            else None
        )
        discount = r.Discount(
            sim.ids.new("di"), coupon_id, self.owner.customer.id, self.record.id, at, end, subscription_item=item_id
        )
        store.discounts.add(discount)
        sim.emit(at, "customer.discount.created", "discounts", discount.id)
        if end is not None:  # a repeating coupon's discount expires (unless the subscription ended first)
            sim.at(end, lambda when: self._emit_if_live(when, "customer.discount.deleted", "discounts", discount.id))
        return _Coupon(discount, the_coupon)

    def _emit_if_live(self, at: int, event_type: str, resource: str, object_id: str) -> None:
        if not self.ended:
            self.sim.emit(at, event_type, resource, object_id)

    # ---- periods ---------------------------------------------------------------------------------------

    def boundary(self, n: int) -> int:
        """Start of period `n` counted from the anchor (0 = the anchor; after a trial, the trial's end)."""
        return period_boundary(self.anchor, self.interval, self.interval_count, n)

    def middle_of_period(self, n: int) -> int:
        start, end = self.boundary(n), self.boundary(n + 1)
        return start + (end - start) // 2

    def _licensed(self) -> list[r.SubscriptionItem]:
        return [item for item in self.items if item.deleted_at is None and item.history[-1].quantity is not None]

    def _metered(self) -> list[r.SubscriptionItem]:
        return [item for item in self.items if item.deleted_at is None and item.history[-1].quantity is None]

    def _price(self, item: r.SubscriptionItem, at: int | None = None) -> r.Price:
        state = item.history[-1] if at is None else item.at(at)
        price = self.sim.store.prices.get(state.price)
        assert price is not None
        return price

    # ---- lines -----------------------------------------------------------------------------------------

    def _period_line(self, item: r.SubscriptionItem, period: tuple[int, int], trial: bool = False) -> LineSpec:
        price = self._price(item)
        quantity = item.history[-1].quantity or 1
        name = self.sim.catalog_name(price)
        if trial:
            return LineSpec(price, quantity, 0, period, f"Trial period for {name}", item=item)
        label = f"{quantity} × {name}" if quantity > 1 else f"1 × {name}"
        return LineSpec(price, quantity, price.unit_amount * quantity, period, label, item=item)

    def _usage_line(self, item: r.SubscriptionItem, period: tuple[int, int]) -> LineSpec:
        price = self._price(item)
        usage = self.owner.rng.randint(200, 5_000)
        name = self.sim.catalog_name(price)
        return LineSpec(price, usage, price.unit_amount * usage, period, f"{usage} × {name}", item=item)

    def _one_time_line(self, at: int, price: r.Price) -> LineSpec:
        item = self._new_invoice_item(at, price, 1, price.unit_amount, at, self.sim.catalog_name(price))
        return LineSpec(price, 1, price.unit_amount, (at, at), item.description, invoice_item=item)

    def _proration_items(
        self, at: int, item: r.SubscriptionItem, old: tuple[r.Price, int], new: tuple[r.Price, int]
    ) -> list[r.InvoiceItem]:
        """Stripe's two proration invoice items: credit for unused time on the old price, debit for the new."""
        start, end = self.record.periods[-1]
        fraction = (end - at) / (end - start)
        keep = 1.0
        if self.coupon is not None and self._coupon_active(at) and self.coupon.coupon.percent_off:
            keep = 1 - self.coupon.coupon.percent_off / 100  # classic mode: prorations are net of discounts
        made = []
        for (price, quantity), sign, wording in ((old, -1, "Unused time on"), (new, 1, "Remaining time on")):
            amount = round_half_up(sign * price.unit_amount * quantity * fraction * keep)
            name = self.sim.catalog_name(price)
            description = f"{wording} {quantity} × {name} after {format_date(at)}"
            made.append(
                self._new_invoice_item(
                    at, price, quantity, amount, end, description, subscription_item=item.id, proration=True
                )
            )
        return made

    def _new_invoice_item(
        self,
        at: int,
        price: r.Price,
        quantity: int,
        amount: int,
        period_end: int,
        description: str,
        *,
        subscription_item: str | None = None,
        proration: bool = False,
    ) -> r.InvoiceItem:
        """A pending invoice item of this subscription from `at`, stored and announced (`invoiceitem.created`)."""
        item = r.InvoiceItem(
            id=self.sim.ids.new("ii"),
            created=at,
            customer=self.owner.customer.id,
            currency=price.currency,
            price=price.id,
            quantity=quantity,
            amount=amount,
            period_start=at,
            period_end=period_end,
            description=description,
            subscription=self.record.id,
            subscription_item=subscription_item,
            proration=proration,
        )
        self.sim.store.invoiceitems.add(item)
        self.sim.emit(at, "invoiceitem.created", "invoiceitems", item.id)
        return item

    def _invoice_item_line(self, invoice_item: r.InvoiceItem) -> LineSpec:
        price = self.sim.store.prices.get(invoice_item.price)
        assert price is not None
        return LineSpec(
            price,
            invoice_item.quantity,
            invoice_item.amount,
            (invoice_item.period_start, invoice_item.period_end),
            invoice_item.description,
            invoice_item=invoice_item,
            proration=invoice_item.proration,
        )

    # ---- discounts and taxes ---------------------------------------------------------------------------

    def _coupon_active(self, at: int) -> bool:
        if self.coupon is None:
            return False
        discount = self.coupon.discount
        if discount.removed_at is not None or (discount.end is not None and at >= discount.end):
            return False
        return discount.start <= at

    def _discounts(self, at: int, specs: list[LineSpec]) -> list[list[tuple[_Coupon, int]]]:
        """Discounts per line, the line's own (item-level) first, then the subscription's on what is left
        (stripe/_invoice_line_item.py: "Line item discounts are applied before invoice discounts"): percentages per
        line; a fixed amount spread over the discountable lines."""
        applied: list[list[tuple[_Coupon, int]]] = [[] for _ in specs]
        left = [spec.gross for spec in specs]
        discountable = [i for i, spec in enumerate(specs) if not spec.proration and spec.gross > 0]
        for i in discountable:
            item = specs[i].item
            item_coupon = self.item_coupons.get(item.id) if item is not None else None
            if item_coupon is not None and item_coupon.coupon.percent_off:
                amount = round_half_up(specs[i].gross * item_coupon.coupon.percent_off / 100)
                applied[i].append((item_coupon, amount))
                left[i] -= amount
        if self.coupon is None or not self._coupon_active(at):
            return applied
        coupon = self.coupon.coupon
        amounts = [0] * len(specs)
        if coupon.percent_off is not None:
            for i in discountable:
                amounts[i] = round_half_up(left[i] * coupon.percent_off / 100)
        elif coupon.amount_off is not None and discountable:
            base = sum(left[i] for i in discountable)
            total = min(coupon.amount_off, base)
            for position, i in enumerate(discountable):
                if position == len(discountable) - 1:
                    amounts[i] = total - sum(amounts)
                else:
                    amounts[i] = round_half_up(total * left[i] / base)
        for i, amount in enumerate(amounts):
            if amount:
                applied[i].append((self.coupon, amount))
        return applied

    def _tax(self, net: int) -> r.TaxAmount | None:
        if self.tax is None:
            return None
        rate = self.tax.percentage
        if self.tax.inclusive:
            tax = round_half_up(net * rate / (100 + rate))
            return r.TaxAmount(self.tax.id, tax, True, net - tax)
        return r.TaxAmount(self.tax.id, round_half_up(net * rate / 100), False, net)

    # ---- invoices --------------------------------------------------------------------------------------

    def _bill(
        self,
        at: int,
        billing_reason: str,
        specs: list[LineSpec],
        period: tuple[int, int],
        finalize_after: int | None = HOUR,
    ) -> r.Invoice:
        """Create the invoice for `specs` at `at`; finalize it after `finalize_after` (None: leave a draft).

        `period` is Stripe's `invoice.period_start/end`: the span in which its pending items accrued (the
        previous billing period for a renewal), not a service period; lines carry those
        (docs/sources.md#stripe-versions).
        """
        sim, store, ids = self.sim, self.sim.store, self.sim.ids
        customer = self.owner.customer
        invoice_id = ids.new("in")
        per_line = self._discounts(at, specs)
        subscription_discounted = any(c is self.coupon for line_discounts in per_line for c, _ in line_discounts)
        lines: list[r.Line] = []
        billed: list[lg.BilledLine] = []
        for spec, line_discounts in zip(specs, per_line, strict=True):
            discount = sum(amount for _, amount in line_discounts)
            tax = self._tax(spec.gross - discount)
            line = r.Line(
                id=ids.new("il"),
                invoice=invoice_id,
                currency=spec.price.currency,
                price=spec.price.id,
                quantity=spec.quantity,
                amount=spec.gross,
                period_start=spec.period[0],
                period_end=spec.period[1],
                description=spec.description,
                subscription=self.record.id,
                subscription_item=spec.item.id if spec.item is not None else None,
                invoice_item=spec.invoice_item.id if spec.invoice_item is not None else None,
                proration=spec.proration,
                discountable=not spec.proration,
                discount_amounts=[(c.discount.id, amount) for c, amount in line_discounts],
                discounts=[c.discount.id for c, _ in line_discounts if c.discount.subscription_item is not None],
                taxes=[tax] if tax is not None else [],
            )
            lines.append(line)
            item_id = spec.item.id if spec.item is not None else None
            if spec.invoice_item is not None:
                spec.invoice_item.invoice = invoice_id
                item_id = spec.invoice_item.subscription_item
            billed.append(
                lg.BilledLine(
                    line_id=line.id,
                    kind="subscription" if spec.price.type == "recurring" else "one_time",
                    price_id=spec.price.id,
                    subscription_id=self.record.id if item_id else None,
                    item_id=item_id,
                    quantity=spec.quantity,
                    period_start=spec.period[0],
                    period_end=spec.period[1],
                    gross=spec.gross,
                    discount=discount,
                    # ChartMogul takes one code per line: the first discount applied (the item's).
                    discount_code=line_discounts[0][0].coupon.id if line_discounts else None,
                    tax=tax.amount if tax is not None else 0,
                    tax_inclusive=bool(tax and tax.inclusive),
                    prorated=spec.proration,
                    description=spec.description,
                )
            )
        if any(spec.invoice_item is not None for spec in specs):
            store.invoiceitems.invalidate()  # invoice items just got their invoice (an indexed field)
        invoice = r.Invoice(
            id=invoice_id,
            created=at,
            customer=customer.id,
            currency=self.record.currency,
            billing_reason=billing_reason,
            collection_method=self.record.collection_method,
            period_start=period[0],
            period_end=period[1],
            lines=lines,
            subscription=self.record.id,
            discounts=[self.coupon.discount.id] if self.coupon is not None and subscription_discounted else [],
        )
        assert invoice.total >= 0, f"negative invoice {invoice_id}: scenario timing is wrong"
        store.add_invoice(invoice)
        self.invoices.append(invoice)
        self.owner.ledger.invoices.append(
            lg.BilledInvoice(invoice_id, at, invoice.currency, billed, self.record.collection_method)
        )
        previous_latest = self.record.latest_invoice_changes[-1][1] if self.record.latest_invoice_changes else None
        self.record.latest_invoice_changes.append((at, invoice_id))
        sim.emit(at, "invoice.created", "invoices", invoice_id)
        if billing_reason != "subscription_create":
            sim.emit(
                at,
                "customer.subscription.updated",
                "subscriptions",
                self.record.id,
                {"latest_invoice": previous_latest},
            )
        if self.coupon is not None and subscription_discounted:
            self.coupon.used += 1
            if self.coupon.coupon.duration == "once":  # used up by its first invoice
                self.coupon.discount.removed_at = at
                sim.emit(at, "customer.discount.deleted", "discounts", self.coupon.discount.id)
        if finalize_after is None:
            invoice.auto_advance = False
            return invoice
        number = len(self.invoices)
        sim.at(at + finalize_after, lambda when: self._finalize(invoice, when, number))
        return invoice

    def _amount_due(self, invoice: r.Invoice) -> int:
        credit = 0
        for note_id in invoice.credit_notes:
            note = self.sim.store.credit_notes.get(note_id)
            if note is not None and note.type == "pre_payment":
                credit += note.amount
        return invoice.total - credit

    def _billed(self, invoice: r.Invoice) -> lg.BilledInvoice:
        return self.owner.ledger.invoice(invoice.id)

    def _finalize(self, invoice: r.Invoice, at: int, number: int) -> None:
        sim = self.sim
        invoice.finalized_at = at
        invoice.number = self.owner.next_invoice_number()
        billed = self._billed(invoice)
        billed.state, billed.finalized_at = "open", at
        if self.record.collection_method == "send_invoice":
            invoice.due_date = at + (self.record.days_until_due or 30) * DAY
            billed.due_date = invoice.due_date
        sim.emit(at, "invoice.finalized", "invoices", invoice.id)
        if invoice.total == 0:  # $0 (trials, 100 % coupons): paid at once, no payment
            sim.at(at + STEP, lambda when: self._mark_paid(invoice, when))
            return
        self._payment_objects(invoice, at)  # Stripe creates the payment intent when it finalizes
        if self.record.status == "unpaid":
            outcome: Outcome = "no_attempt"
        else:
            default: Outcome = "send_pay" if self.record.collection_method == "send_invoice" else "pay"
            outcome = self.outcomes.get(number, default)
        self._follow(invoice, at, outcome)

    def _follow(self, invoice: r.Invoice, finalized_at: int, outcome: Outcome) -> None:
        sim = self.sim
        at = finalized_at + PAYMENT_DELAY
        if outcome == "no_attempt":
            invoice.auto_advance = False
        elif outcome == "pay":
            sim.at(at, lambda when: self._attempt(invoice, when, succeed=True))
        elif outcome == "fail_then_pay":
            sim.at(at, lambda when: self._attempt(invoice, when, succeed=False))
            sim.at(at + RETRY_OFFSETS[0], lambda when: self._attempt(invoice, when, succeed=True))
        elif outcome in ("uncollectible", "unpaid"):
            sim.at(at, lambda when: self._attempt(invoice, when, succeed=False))
            for offset in RETRY_OFFSETS:
                sim.at(at + offset, lambda when: self._attempt(invoice, when, succeed=False))
            give_up = at + RETRY_OFFSETS[-1] + HOUR
            if outcome == "uncollectible":
                sim.at(give_up, lambda when: self._mark_uncollectible(invoice, when))
            else:
                sim.at(give_up, lambda when: self._set_status(when, "unpaid"))
        elif outcome == "send_pay":
            sim.at(at + 10 * DAY, lambda when: self._pay_hosted(invoice, when))
        elif outcome == "send_void":
            sim.at(at + 20 * DAY, lambda when: self._void(invoice, when))
        elif outcome == "send_credit_then_pay":
            sim.at(at + 2 * DAY, lambda when: self._credit_note(invoice, when, "pre_payment", 0.5))
            sim.at(at + 8 * DAY, lambda when: self._pay_hosted(invoice, when))

    def _payment_objects(self, invoice: r.Invoice, at: int) -> tuple[r.PaymentIntent, r.InvoicePayment]:
        sim, store, ids = self.sim, self.sim.store, self.sim.ids
        if invoice.id in self._payments:
            return self._payments[invoice.id]
        amount = self._amount_due(invoice)
        intent = r.PaymentIntent(ids.new("pi"), at, invoice.customer, amount, invoice.currency)
        payment = r.InvoicePayment(ids.new("inpay"), at, invoice.id, intent.id, invoice.currency, amount)
        store.payment_intents.add(intent)
        store.invoice_payments.add(payment)
        invoice.payment_intent = intent.id
        self._payments[invoice.id] = (intent, payment)
        sim.emit(at, "payment_intent.created", "payment_intents", intent.id)
        return intent, payment

    def _attempt(self, invoice: r.Invoice, at: int, succeed: bool) -> None:
        if invoice.status_at(at) != "open":
            return  # paid, voided or marked uncollectible meanwhile
        sim, store, ids = self.sim, self.sim.store, self.sim.ids
        intent, payment = self._payment_objects(invoice, at)
        charge = r.Charge(
            ids.new("ch"),
            at,
            invoice.customer,
            intent.id,
            intent.amount,
            invoice.currency,
            succeeded=succeed,
            failure_code=None if succeed else "insufficient_funds",
        )
        store.charges.add(charge)
        intent.charges.append(charge.id)
        invoice.attempts.append(at)
        billed = self._billed(invoice)
        if succeed:
            sim.emit(at, "charge.succeeded", "charges", charge.id)
            intent.succeeded_at = at
            sim.emit(at, "payment_intent.succeeded", "payment_intents", intent.id)
            payment.paid_at = at
            billed.transactions.append(lg.BilledTransaction(payment.id, "payment", "successful", at, intent.amount))
            sim.emit(at, "invoice_payment.paid", "invoice_payments", payment.id)
            self._mark_paid(invoice, at)
            if self.record.status in ("past_due", "unpaid"):
                self._set_status(at, "active")
        else:
            sim.emit(at, "charge.failed", "charges", charge.id)
            sim.emit(at, "payment_intent.payment_failed", "payment_intents", intent.id)
            billed.transactions.append(lg.BilledTransaction(charge.id, "payment", "failed", at, intent.amount))
            sim.emit(at, "invoice.payment_failed", "invoices", invoice.id)
            if self.record.status == "active":
                self._set_status(at, "past_due")

    def _pay_hosted(self, invoice: r.Invoice, at: int) -> None:
        """A send_invoice invoice paid on the hosted page: the payment objects appear when the customer pays."""
        self._attempt(invoice, at, succeed=True)

    def _mark_paid(self, invoice: r.Invoice, at: int) -> None:
        invoice.paid_at = at
        self._billed(invoice).state = "paid"
        self.sim.emit(at, "invoice.paid", "invoices", invoice.id)
        self.sim.emit(at, "invoice.payment_succeeded", "invoices", invoice.id)

    def _mark_uncollectible(self, invoice: r.Invoice, at: int) -> None:
        if invoice.status_at(at) != "open":
            return
        invoice.marked_uncollectible_at = at
        self._billed(invoice).state = "uncollectible"
        self.sim.emit(at, "invoice.marked_uncollectible", "invoices", invoice.id)
        if self.record.status == "past_due":
            self._set_status(at, "active")

    def _void(self, invoice: r.Invoice, at: int) -> None:
        if invoice.status_at(at) != "open":
            return
        invoice.voided_at = at
        self._billed(invoice).state = "void"
        intent, payment = self._payment_objects(invoice, at)
        intent.canceled_at = payment.canceled_at = at
        self.sim.emit(at, "payment_intent.canceled", "payment_intents", intent.id)
        self.sim.emit(at, "invoice.voided", "invoices", invoice.id)

    def _credit_note(
        self, invoice: r.Invoice, at: int, kind: Literal["pre_payment", "post_payment"], share: float
    ) -> None:
        """A credit note for `share` of the invoice's first line; after payment it is refunded to the card."""
        sim, store, ids = self.sim, self.sim.store, self.sim.ids
        status = invoice.status_at(at)
        if (kind == "pre_payment" and status != "open") or (kind == "post_payment" and status != "paid"):
            return
        first = invoice.lines[0]
        amount = round_half_up(first.amount * share)
        note = r.CreditNote(
            id=ids.new("cn"),
            created=at,
            customer=invoice.customer,
            invoice=invoice.id,
            currency=invoice.currency,
            number=f"{invoice.number}-CN-{len(invoice.credit_notes) + 1:02d}",
            type=kind,
            reason="order_change" if kind == "pre_payment" else "product_unsatisfactory",
            lines=[r.CreditNoteLine(ids.new("cnli"), first.id, amount, first.quantity, first.description)],
        )
        if kind == "post_payment":
            refund = self._refund(invoice, at, amount, reason="requested_by_customer")
            if refund is None:
                return
            note.refund = refund.id
        else:  # the open invoice now asks for less: so does its payment intent
            intent, payment = self._payment_objects(invoice, at)
            intent.amount -= amount
            payment.amount_requested -= amount
        store.credit_notes.add(note)
        invoice.credit_notes.append(note.id)
        sim.emit(at, "credit_note.created", "credit_notes", note.id)
        sim.emit(at, "invoice.updated", "invoices", invoice.id)

    def _refund(self, invoice: r.Invoice, at: int, amount: int, reason: str | None) -> r.Refund | None:
        sim, store = self.sim, self.sim.store
        intent = store.payment_intents.get(invoice.payment_intent or "")
        if intent is None or intent.succeeded_at is None:
            return None
        charge = store.charges.get(intent.charges[-1])
        assert charge is not None and charge.succeeded
        already = sum(ref.amount for ref in (store.refunds.get(rid) for rid in charge.refunds) if ref)
        amount = min(amount, charge.amount - already)
        if amount <= 0:
            return None
        refund = r.Refund(
            sim.ids.new("re"), at, invoice.customer, charge.id, intent.id, amount, invoice.currency, reason
        )
        store.refunds.add(refund)
        charge.refunds.append(refund.id)
        self._billed(invoice).transactions.append(lg.BilledTransaction(refund.id, "refund", "successful", at, amount))
        sim.emit(at, "refund.created", "refunds", refund.id)
        sim.emit(at, "charge.refunded", "charges", charge.id)
        return refund

    def latest_paid_invoice(self, at: int) -> r.Invoice | None:
        for invoice in reversed(self.invoices):
            if invoice.status_at(at) == "paid" and invoice.payment_intent is not None:
                return invoice
        return None

    # ---- state changes ---------------------------------------------------------------------------------

    def _set_status(self, at: int, status: r.SubscriptionStatus) -> None:
        old = self.record.status
        if old == status or self.ended:
            return
        self.record.statuses.append((at, status))
        self.sim.emit(at, "customer.subscription.updated", "subscriptions", self.record.id, {"status": old})

    def _renew(self, at: int) -> None:
        """A period boundary: end, stay paused, or open the next period and invoice it."""
        if self.ended:
            return
        if self.cancel_requested:
            self._end(at, at, reason="cancellation_requested")
            return
        if self.record.status == "trialing" and self.trial_ends_paused:
            # Trial over without a payment method: Stripe pauses the subscription; no invoice
            # (docs/sources.md#stripe-object-mapping).
            self.record.statuses.append((at, "paused"))
            self.sim.emit(at, "customer.subscription.paused", "subscriptions", self.record.id)
            self.sim.emit(at, "customer.subscription.updated", "subscriptions", self.record.id, {"status": "trialing"})
            return
        previous = self.record.periods[-1]
        self.period_index += 1
        if self.schedule is not None:
            self._apply_schedule(at)
        period = (at, self.boundary(self.period_index + 1))
        self.record.periods.append(period)
        if self.record.status == "trialing":
            self._set_status(at, "active")
        specs = [self._invoice_item_line(item) for item in self.pending]
        self.pending = []
        if self.period_index > 0:  # no usage was recorded during a trial
            specs += [self._usage_line(item, previous) for item in self._metered()]
        specs += [self._period_line(item, period) for item in self._licensed()]
        draft = self.collection_paused == "keep_as_draft"
        self._bill(at, "subscription_cycle", specs, (previous[0], at), finalize_after=None if draft else HOUR)
        self.sim.at(period[1], self._renew)

    def _end(self, at: int, requested_at: int, reason: str) -> None:
        self.ended = True
        record = self.record
        record.canceled_at = record.canceled_at or requested_at
        record.ended_at = at
        record.cancellation_reason = reason
        record.statuses.append((at, "canceled"))
        for billed in self.owner.ledger.subscriptions:
            if billed.subscription_id == record.id:
                billed.ended_at = at
        self.sim.emit(at, "customer.subscription.deleted", "subscriptions", record.id)

    # ---- actions a scenario or a step schedules ---------------------------------------------------------

    def apply_coupon(self, at: int, coupon: str) -> None:
        """Add a coupon to a running subscription: it discounts the invoices from the next renewal on."""
        if self.ended or self.coupon is not None:
            return
        the_coupon = self.sim.store.coupons.get(coupon)
        assert the_coupon is not None, coupon
        discount = r.Discount(self.sim.ids.new("di"), coupon, self.owner.customer.id, self.record.id, at, None)
        self.sim.store.discounts.add(discount)
        self.record.discounts.append(discount.id)
        self.coupon = _Coupon(discount, the_coupon)
        self.sim.emit(at, "customer.discount.created", "discounts", discount.id)

    def cancel_now(self, at: int, reason: str = "cancellation_requested") -> None:
        if not self.ended:
            self._end(at, at, reason)

    def cancel_at_period_end(self, at: int) -> None:
        if self.ended or self.cancel_requested:
            return
        self.cancel_requested = True
        self.record.canceled_at = at
        self.record.cancel_at_period_end_changes.append((at, True))
        self.sim.emit(
            at,
            "customer.subscription.updated",
            "subscriptions",
            self.record.id,
            {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None},
        )

    def pause_collection(self, at: int, behavior: str = "keep_as_draft") -> None:
        if self.ended:
            return
        self.collection_paused = behavior
        self.record.pause_collection_changes.append((at, behavior))
        self.sim.emit(at, "customer.subscription.updated", "subscriptions", self.record.id, {"pause_collection": None})

    def resume_collection(self, at: int) -> None:
        if self.ended or self.collection_paused is None:
            return
        previous = self.collection_paused
        self.collection_paused = None
        self.record.pause_collection_changes.append((at, None))
        self.sim.emit(
            at,
            "customer.subscription.updated",
            "subscriptions",
            self.record.id,
            {"pause_collection": {"behavior": previous, "resumes_at": None}},
        )

    def change_item(
        self,
        at: int,
        index: int,
        price: r.Price | None = None,
        quantity: int | None = None,
        proration: Literal["always_invoice", "create_prorations", "none"] = "create_prorations",
    ) -> None:
        """Change an item's price and/or quantity mid-period (the item id stays:
        docs/sources.md#stripe-object-mapping)."""
        if self.ended or self.record.status not in ("active", "past_due"):
            return
        item = self.items[index]
        old_state = item.history[-1]
        old_price = self._price(item)
        new_price = price or old_price
        new_quantity = quantity if quantity is not None else (old_state.quantity or 1)
        item.history.append(r.ItemState(at, new_price.id, new_quantity))
        self.sim.emit(
            at,
            "customer.subscription.updated",
            "subscriptions",
            self.record.id,
            {"items": {"data": [{"id": item.id, "price": old_price.id, "quantity": old_state.quantity}]}},
        )
        if proration == "none":
            return
        made = self._proration_items(at, item, (old_price, old_state.quantity or 1), (new_price, new_quantity))
        if proration == "create_prorations":
            self.pending.extend(made)
            return
        specs = [self._invoice_item_line(invoice_item) for invoice_item in made]
        self._bill(at, "subscription_update", specs, (at, at), finalize_after=STEP)

    def refund_latest(self, at: int, share: float) -> None:
        invoice = self.latest_paid_invoice(at)
        if invoice is not None:
            intent = self.sim.store.payment_intents.get(invoice.payment_intent or "")
            if intent is not None:
                self._refund(invoice, at, round_half_up(intent.amount * share), reason="requested_by_customer")

    def credit_latest(self, at: int, share: float) -> None:
        invoice = self.latest_paid_invoice(at)
        if invoice is not None:
            self._credit_note(invoice, at, "post_payment", share)

    # ---- subscription schedules --------------------------------------------------------------------------

    def _create_schedule(self, at: int, phases: list[tuple[int, list[tuple[r.Price, int | None]]]]) -> None:
        """Phases as `(periods, items)`: the first phase is the subscription's start; release after the last."""
        store, ids = self.sim.store, self.sim.ids
        boundaries = [0]
        for periods, _ in phases:
            boundaries.append(boundaries[-1] + periods)
        record = r.SubscriptionSchedule(
            id=ids.new("sub_sched"),
            created=at,
            customer=self.owner.customer.id,
            subscription=self.record.id,
            phases=[
                r.SchedulePhase(
                    at if index == 0 else self.boundary(boundaries[index]),
                    self.boundary(boundaries[index + 1]),
                    [(price.id, quantity) for price, quantity in phase_items],
                )
                for index, (_, phase_items) in enumerate(phases)
            ],
        )
        store.subscription_schedules.add(record)
        self.record.schedule = record.id
        self.schedule = _SchedulePlan(
            record,
            {boundaries[index]: phase_items for index, (_, phase_items) in enumerate(phases) if index > 0},
            boundaries[-1],
        )
        self.sim.emit(at, "subscription_schedule.created", "subscription_schedules", record.id)

    def _apply_schedule(self, at: int) -> None:
        plan = self.schedule
        assert plan is not None
        if self.period_index in plan.changes:
            for item, (price, quantity) in zip(self.items, plan.changes[self.period_index], strict=False):
                old = item.history[-1]
                item.history.append(r.ItemState(at, price.id, quantity))
                self.sim.emit(
                    at,
                    "customer.subscription.updated",
                    "subscriptions",
                    self.record.id,
                    {"items": {"data": [{"id": item.id, "price": old.price, "quantity": old.quantity}]}},
                )
            self.sim.emit(at, "subscription_schedule.updated", "subscription_schedules", plan.record.id)
        if self.period_index == plan.release_at_period:
            plan.record.released_at = at
            self.sim.emit(at, "subscription_schedule.released", "subscription_schedules", plan.record.id)
            self.schedule = None
