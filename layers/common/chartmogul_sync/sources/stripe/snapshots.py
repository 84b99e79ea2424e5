"""One customer's snapshot (docs/architecture.md "Contracts between the stages", docs/formats.md), assembled the same
way whatever fetched its objects.

Two paths feed one assembly:

- per customer (incremental, one-customer sync): `fetch_customer_records` lists the customer's objects with
  `customer=` filters;
- backfill: global lists, staged in S3 partitioned by customer, read back into `CustomerRecords`.

Both list the same endpoints with the same parameters (`OWNED_LISTS`), complete every object the same way
(`complete`: invoice and credit note lines, payments, refunds and subscription items past the embedded first
page are fetched) and hand the objects to `CustomerRecords.add`, so the snapshot of a customer does not depend
on the path that built it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from ...config import STRIPE_API_VERSION
from ...models.snapshot import CustomerSnapshot, StripeJson
from .client import Page, StripeApi, StripeList, follow_pages
from .events import CustomerDeleted, event_target

# The line expansions of an invoice list, and the same for lines paged past the embedded first page.
INVOICE_LINES_EXPAND = ("data.lines.data.discounts",)
LINES_PAGE_EXPAND = ("data.discounts",)


@dataclass(frozen=True)
class OwnedList:
    """A list endpoint whose objects each belong to one customer (`customer` field)."""

    resource: StripeList
    params: Mapping[str, Any]


# The customer-owned lists, with the parameters both paths use. Invoice payments and refunds name no customer
# (docs/sources.md#stripe-versions): payments come with their invoice (`invoice.payments` is
# includable, docs/sources.md#stripe-expand), refunds are listed per refunded charge (`complete`).
OWNED_LISTS: tuple[OwnedList, ...] = (
    # Without status=all the list leaves out canceled subscriptions (docs/sources.md#stripe-lists).
    OwnedList(StripeList.SUBSCRIPTIONS, {"status": "all"}),
    # Discounts expanded: a line's `discount_amounts` name only the discount id; its coupon (ChartMogul's
    # `discount_code`) is on the expanded discount (`source.coupon` since clover, docs/sources.md#stripe-versions). The
    # invoice's `discounts` hold the invoice-level ones only; an item-level coupon is on the line's own `discounts`
    # (stripe/_invoice_line_item.py: "Line item discounts are applied before invoice discounts"), so those are
    # expanded too: `data.lines.data.discounts` is four levels, Stripe's deepest
    # (docs.stripe.com/api/expanding_objects).
    OwnedList(StripeList.INVOICES, {"expand": ["data.payments", "data.discounts", *INVOICE_LINES_EXPAND]}),
    OwnedList(StripeList.INVOICE_ITEMS, {}),
    OwnedList(StripeList.CHARGES, {}),
    OwnedList(StripeList.CREDIT_NOTES, {}),
)


# A backfill lists refunds globally instead of per refunded charge: one request per 100 refunds. A refund names
# its charge only, so the charge comes expanded (docs/sources.md#stripe-expand) to tell the customer
# (`refund_with_owner`).
REFUNDS_WITH_OWNER = OwnedList(StripeList.REFUNDS, {"expand": ["data.charge"]})


def refund_with_owner(refund: StripeJson) -> tuple[str | None, StripeJson]:
    """The customer of a refund listed with its charge expanded, and the refund as Stripe renders it unexpanded."""
    charge = refund.get("charge")
    if not isinstance(charge, dict):
        return None, refund
    return customer_of(charge), {**refund, "charge": charge.get("id")}


def customer_of(obj: StripeJson) -> str | None:
    value = obj.get("customer")
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def created_of(obj: StripeJson) -> int | None:
    # An invoice item names its creation time `date`; every other object `created`.
    created = obj.get("created", obj.get("date"))
    return created if isinstance(created, int) else None


def sort_key(obj: StripeJson) -> tuple[int, str]:
    return (created_of(obj) or 0, str(obj["id"]))


# -- completion: fetch what the embedded first page left out --------------------------------------------------


def complete(api: StripeApi, resource: StripeList, obj: StripeJson, *, refunds_per_charge: bool = True) -> StripeJson:
    """The object with every embedded list complete (`has_more` false); other objects unchanged.

    `refunds_per_charge=False`: the caller lists refunds on their own (`REFUNDS_WITH_OWNER`, the backfill).
    """
    if resource is StripeList.INVOICES:
        obj = _complete_nested(
            api, obj, "lines", lambda after: api.list_lines(resource, str(obj["id"]), after, expand=LINES_PAGE_EXPAND)
        )
        obj = _complete_nested(
            api, obj, "payments", lambda after: _page(api, StripeList.INVOICE_PAYMENTS, {"invoice": obj["id"]}, after)
        )
    elif resource is StripeList.CHARGES and refunds_per_charge and obj.get("amount_refunded"):
        # A charge's refunds are not part of it (expandable only) and a refund names no customer: list them for
        # the charges that have any, which `amount_refunded` tells without a request.
        refunds = list(api.list_all(StripeList.REFUNDS, {"charge": obj["id"]}))
        obj = {**obj, "refunds": {"object": "list", "data": refunds, "has_more": False}}
    elif resource is StripeList.CREDIT_NOTES:
        obj = _complete_nested(api, obj, "lines", lambda after: api.list_lines(resource, str(obj["id"]), after))
    elif resource is StripeList.SUBSCRIPTIONS:
        obj = _complete_nested(
            api,
            obj,
            "items",
            lambda after: _page(api, StripeList.SUBSCRIPTION_ITEMS, {"subscription": obj["id"]}, after),
        )
    return obj


def _page(api: StripeApi, resource: StripeList, params: Mapping[str, Any], after: str) -> Page:
    return api.list_page(resource, {**params, "starting_after": after})


def _complete_nested(api: StripeApi, obj: StripeJson, field_name: str, next_page: Callable[[str], Page]) -> StripeJson:
    nested = obj.get(field_name)
    if not isinstance(nested, dict) or not nested.get("has_more"):
        return obj
    items: list[StripeJson] = list(nested.get("data") or [])
    if items:

        def after(starting_after: str | None) -> Page:
            assert starting_after is not None  # the walk starts after the embedded page's last item
            return next_page(starting_after)

        what = f"{obj.get('object', 'object')} {obj.get('id')} {field_name}"
        for page in follow_pages(after, what, starting_after=str(items[-1]["id"])):
            items.extend(page.data)
    return {**obj, field_name: {**nested, "data": items, "has_more": False}}


# -- the records of one customer ------------------------------------------------------------------------------


@dataclass
class CustomerRecords:
    """The Stripe objects of one customer, as listed and completed, before assembly."""

    customer_id: str
    customer: StripeJson | None = None
    deleted: bool = False
    subscriptions: dict[str, StripeJson] = field(default_factory=dict)
    invoices: dict[str, StripeJson] = field(default_factory=dict)
    invoice_items: dict[str, StripeJson] = field(default_factory=dict)
    invoice_payments: dict[str, StripeJson] = field(default_factory=dict)
    charges: dict[str, StripeJson] = field(default_factory=dict)
    refunds: dict[str, StripeJson] = field(default_factory=dict)
    credit_notes: dict[str, StripeJson] = field(default_factory=dict)
    drafts_skipped: int = 0

    def add(self, resource: StripeList, obj: StripeJson) -> None:
        """Take one object of a customer-owned list (keyed by id: staging a page twice changes nothing)."""
        object_id = str(obj["id"])
        if resource is StripeList.CUSTOMERS:
            self.set_customer(obj)
        elif resource is StripeList.SUBSCRIPTIONS:
            self.subscriptions[object_id] = obj
        elif resource is StripeList.INVOICES:
            # Drafts are not issued: nothing of them reaches ChartMogul (docs/mapping-decisions.md "Invoices").
            if obj.get("status") == "draft":
                self.drafts_skipped += 1
                return
            self.invoices[object_id] = _lift_embedded(obj, "payments", self.invoice_payments)
        elif resource is StripeList.INVOICE_ITEMS:
            self.invoice_items[object_id] = obj
        elif resource is StripeList.CHARGES:
            self.charges[object_id] = _lift_embedded(obj, "refunds", self.refunds)
        elif resource is StripeList.CREDIT_NOTES:
            self.credit_notes[object_id] = obj
        elif resource is StripeList.REFUNDS:
            self.refunds[object_id] = obj
        else:
            raise ValueError(f"{resource.value} objects do not belong to a customer (object {object_id})")

    def objects(self) -> Iterator[StripeJson]:
        """Every object of the customer's lists (not the customer itself)."""
        for kept in (
            self.subscriptions,
            self.invoices,
            self.invoice_items,
            self.invoice_payments,
            self.charges,
            self.refunds,
            self.credit_notes,
        ):
            yield from kept.values()

    def set_customer(self, customer: StripeJson, *, last_known: StripeJson | None = None) -> None:
        if customer.get("deleted") is True:
            # Stripe answers a deleted customer with a stub; keep what its deletion event still showed.
            self.deleted = True
            self.customer = {**(last_known or {}), **customer}
        else:
            self.customer = customer


def _lift_embedded(obj: StripeJson, field_name: str, into: dict[str, StripeJson]) -> StripeJson:
    """The object without its embedded list `field_name`, whose items are filed by id in `into` (a snapshot
    holds invoice payments and refunds as lists of their own)."""
    rest = dict(obj)
    for item in _embedded(rest.pop(field_name, None)):
        into[str(item["id"])] = item
    return rest


def _embedded(nested: Any) -> list[StripeJson]:
    if isinstance(nested, dict):
        return [item for item in nested.get("data") or [] if isinstance(item, dict)]
    return []


# -- prices and products ----------------------------------------------------------------------------------


class Catalog:
    """Prices and products by id: preloaded (backfill) or fetched on first use (per customer), then cached."""

    def __init__(self, api: StripeApi | None) -> None:
        self._api = api
        self.prices: dict[str, StripeJson] = {}
        self.products: dict[str, StripeJson] = {}
        self.missing: set[str] = set()

    def add(self, resource: StripeList, obj: StripeJson) -> None:
        target = self.prices if resource is StripeList.PRICES else self.products
        target[str(obj["id"])] = obj

    def preload(self, max_pages: int) -> None:
        """List the first `max_pages` pages (100 objects each) of products and of prices into the cache.

        For a run exporting many customers: a price or product each customer's snapshot needs costs a request of
        its own, and a small catalog fits a page or two. A larger one is listed only that far; what is not listed
        is still retrieved on first use. List and retrieve answer the same object (the backfill builds its
        snapshots from the lists), so a snapshot does not depend on which path found its prices.
        """
        if self._api is None:
            return
        for resource in (StripeList.PRODUCTS, StripeList.PRICES):
            starting_after: str | None = None
            for _page in range(max_pages):  # bounded: at most max_pages requests per list
                page = self._api.list_page(resource, {"starting_after": starting_after} if starting_after else {})
                for obj in page.data:
                    self.add(resource, obj)
                if not page.has_more or not page.data:
                    break
                starting_after = str(page.data[-1]["id"])

    def price(self, price_id: str) -> StripeJson | None:
        return self._get(StripeList.PRICES, self.prices, price_id)

    def product(self, product_id: str) -> StripeJson | None:
        return self._get(StripeList.PRODUCTS, self.products, product_id)

    def _get(self, resource: StripeList, cache: dict[str, StripeJson], object_id: str) -> StripeJson | None:
        if object_id in cache:
            return cache[object_id]
        if self._api is None or object_id in self.missing:
            return None
        try:
            found = self._api.retrieve(resource, object_id)
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:
                raise
            # Deleted from the catalog: the transform reports the lines that needed it (a bad record).
            self.missing.add(object_id)
            return None
        cache[object_id] = found
        return found


def _referenced_price_ids(records: CustomerRecords) -> set[str]:
    ids: set[str] = set()
    for subscription in records.subscriptions.values():
        for item in _embedded(subscription.get("items")):
            _add_id(ids, item.get("price"))
    for invoice in records.invoices.values():
        for line in _embedded(invoice.get("lines")):
            _add_id(ids, _price_details(line).get("price"))
    for invoice_item in records.invoice_items.values():
        _add_id(ids, _price_details(invoice_item).get("price"))
    return ids


def _price_details(obj: StripeJson) -> dict[str, Any]:
    # Since basil, lines and invoice items name their price in `pricing.price_details`
    # (docs/sources.md#stripe-versions).
    pricing = obj.get("pricing")
    details = pricing.get("price_details") if isinstance(pricing, dict) else None
    return details if isinstance(details, dict) else {}


def _add_id(ids: set[str], value: Any) -> None:
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str) and value:
        ids.add(value)


# -- deleted customers --------------------------------------------------------------------------------------


class RecentDeletions:
    """What the `customer.deleted` events still kept (30 days) say about deleted customers, read once, on demand.

    A deleted customer retrieves as a bare stub; its deletion event keeps its last fields and the deletion time.
    """

    def __init__(self, api: StripeApi) -> None:
        self._api = api
        self._by_customer: dict[str, StripeJson] | None = None

    def last_known(self, customer_id: str) -> StripeJson | None:
        if self._by_customer is None:
            self._by_customer = {}
            for event in self._api.list_all(StripeList.EVENTS, {"type": "customer.deleted"}):
                target = event_target(event)
                if isinstance(target, CustomerDeleted):
                    # Newest first: keep the first seen, should a customer id ever show up twice.
                    self._by_customer.setdefault(target.customer_id, target.last_known)
        return self._by_customer.get(customer_id)


# -- assembly -------------------------------------------------------------------------------------------------


def assemble_snapshot(records: CustomerRecords, catalog: Catalog) -> CustomerSnapshot:
    """The snapshot of one customer: every list sorted by (created, id), prices and products it references."""
    if records.customer is None:
        raise ValueError(f"customer {records.customer_id}: no customer object was found to build a snapshot from")
    prices = [price for price_id in sorted(_referenced_price_ids(records)) if (price := catalog.price(price_id))]
    product_ids: set[str] = set()
    for price in prices:
        _add_id(product_ids, price.get("product"))
    products = [product for product_id in sorted(product_ids) if (product := catalog.product(product_id))]
    return CustomerSnapshot(
        api_version=STRIPE_API_VERSION,
        customer=records.customer,
        deleted=records.deleted,
        subscriptions=_sorted(records.subscriptions.values()),
        invoices=_sorted(records.invoices.values()),
        invoice_items=_sorted(records.invoice_items.values()),
        invoice_payments=_sorted(records.invoice_payments.values()),
        charges=_sorted(records.charges.values()),
        refunds=_sorted(records.refunds.values()),
        credit_notes=_sorted(records.credit_notes.values()),
        prices=prices,
        products=products,
    )


def _sorted(objects: Iterable[StripeJson]) -> list[StripeJson]:
    return sorted(objects, key=sort_key)


# -- the per-customer path ------------------------------------------------------------------------------------


def fetch_customer_records(
    api: StripeApi,
    customer_id: str,
    *,
    last_known: StripeJson | None = None,
    deletions: RecentDeletions | None = None,
) -> CustomerRecords:
    """Everything of one customer, straight from Stripe (incremental and one-customer sync)."""
    records = CustomerRecords(customer_id)
    customer = api.retrieve(StripeList.CUSTOMERS, customer_id)
    if customer.get("deleted") is True and last_known is None:
        last_known = (deletions or RecentDeletions(api)).last_known(customer_id)
    records.set_customer(customer, last_known=last_known)
    for owned in OWNED_LISTS:
        if records.deleted and owned.resource is StripeList.SUBSCRIPTIONS:
            continue  # `status=all` may leave them out: `add_subscriptions_of_deleted_customer` below
        try:
            for obj in api.list_all(owned.resource, {**owned.params, "customer": customer_id}):
                records.add(owned.resource, complete(api, owned.resource, obj))
        except stripe.InvalidRequestError as error:
            # A deleted customer's lists may answer "No such customer": it has nothing more to list.
            if not (records.deleted and error.http_status == 404):
                raise
    if records.deleted:
        add_subscriptions_of_deleted_customer(api, records)
    return records


def add_subscriptions_of_deleted_customer(api: StripeApi, records: CustomerRecords) -> None:
    """A deleted customer's subscriptions, listed the way Stripe documents them, into `records`.

    Deleting a customer cancels its subscriptions, and Stripe documents only `status=canceled` as returning "all
    canceled subscriptions, including those belonging to deleted customers" (stripe/params/
    _subscription_list_params.py `status`); `status=all` is not promised to. Without them the churn of a
    customer deleted more than 30 days ago (no `customer.deleted` event left) could not be dated from `ended_at`.
    A subscription its invoices name that the list still left out is retrieved by id.
    """
    subscriptions = StripeList.SUBSCRIPTIONS
    try:
        for obj in api.list_all(subscriptions, {"customer": records.customer_id, "status": "canceled"}):
            records.add(subscriptions, complete(api, subscriptions, obj))
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:  # "No such customer": the invoices below still name its subscriptions
            raise
    named = {sub for invoice in records.invoices.values() if (sub := _invoice_subscription(invoice)) is not None}
    for subscription_id in sorted(named - set(records.subscriptions)):
        try:
            found = api.retrieve(subscriptions, subscription_id)
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:
                raise
            continue  # gone for good: the transform dates what it can without it
        records.add(subscriptions, complete(api, subscriptions, found))


def _invoice_subscription(invoice: StripeJson) -> str | None:
    # Since basil the subscription is at `parent.subscription_details.subscription` (docs/sources.md#stripe-versions).
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    value = details.get("subscription") if isinstance(details, dict) else None
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def fetch_customer_snapshot(
    api: StripeApi, catalog: Catalog, customer_id: str, *, last_known: StripeJson | None = None
) -> CustomerSnapshot:
    return assemble_snapshot(fetch_customer_records(api, customer_id, last_known=last_known), catalog)
