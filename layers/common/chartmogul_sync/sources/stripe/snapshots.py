"""One customer's snapshot (docs/architecture.md "Contracts between the stages", docs/formats.md), assembled the same
way whatever fetched its objects.

Two paths feed one assembly:

- per customer (incremental, one-customer sync): `fetch_customer_records` lists the customer's objects with
  `customer=` filters;
- backfill: global lists, staged in S3 partitioned by customer, read back into `CustomerRecords`.

Both list the same endpoints with the same parameters (`OWNED_LISTS`), complete every object the same way
(`complete`: invoice and credit note lines, payments, refunds and subscription items past the embedded first
page are fetched) and hand the objects to `CustomerRecords.add`, so the snapshot of a customer does not depend
on the path that built it. The per-customer path saves requests where Stripe gives the same objects for fewer
(docs/snapshot-format.md "Requests per customer"): the customer comes expanded on its first list that has an
object, refunds come expanded on their charges, and a run exporting many customers lists the lists an account
holds few of (invoice items, credit notes) once for the whole account (`AccountLists`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from ...config import STRIPE_API_VERSION
from ...models.snapshot import CustomerSnapshot, StripeJson
from .client import Page, PagingError, StripeApi, StripeList, follow_pages
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
# includable, docs/sources.md#stripe-expand), refunds with their charges per customer (`CHARGE_REFUNDS_EXPAND`)
# and in a list of their own in a backfill (`REFUNDS_WITH_OWNER`).
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


# The per-customer path takes a charge's refunds with the charge: `charge.refunds` is expandable (not rendered
# unless asked for since 2022-11-15: docs.stripe.com/changelog/2022-11-15/deprecates-charges-auto-expand; stripe
# 16.1.0 `stripe/_charge.py` `refunds: Optional[ListObject["Refund"]]`), a sublist whose rest `complete` pages
# with `GET /v1/refunds?charge=`. One request for a customer's charges and all their refunds, instead of one more
# per refunded charge; `CustomerRecords.add` lifts the refunds out, so the charge is stored as Stripe renders it
# unexpanded.
CHARGE_REFUNDS_EXPAND = ("data.refunds",)

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
    elif resource is StripeList.CHARGES and refunds_per_charge:
        if isinstance(obj.get("refunds"), dict):  # listed with its refunds expanded (`CHARGE_REFUNDS_EXPAND`)
            obj = _complete_nested(
                api, obj, "refunds", lambda after: _page(api, StripeList.REFUNDS, {"charge": obj["id"]}, after)
            )
        elif obj.get("amount_refunded"):
            # Listed without them: a refund names no customer, so list them for the charges that have any, which
            # `amount_refunded` tells without a request.
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
        self._reading = threading.Lock()  # the backfill resolves a partition's orphans side by side

    def last_known(self, customer_id: str) -> StripeJson | None:
        with self._reading:
            if self._by_customer is None:
                by_customer: dict[str, StripeJson] = {}
                for event in self._api.list_all(StripeList.EVENTS, {"type": "customer.deleted"}):
                    target = event_target(event)
                    if isinstance(target, CustomerDeleted):
                        # Newest first: keep the first seen, should a customer id ever show up twice.
                        by_customer.setdefault(target.customer_id, target.last_known)
                self._by_customer = by_customer
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


class AccountLists:
    """Customer-owned objects listed once for the whole account, by customer, for a run exporting many customers.

    An account holds few invoice items and credit notes beside its invoices and charges (a proration, a one-off
    item, a credit note now and then): a run exporting C customers spends C requests on each of those lists per
    customer, or as many pages as the account has of it (100 objects each) listed whole. The whole list is the
    backfill's way to the same objects (global lists, the same parameters), so the snapshots do not change.
    """

    def __init__(self) -> None:
        self._by_resource: dict[StripeList, dict[str, list[StripeJson]]] = {}

    @property
    def kept(self) -> bool:
        """Whether any list was kept (a snapshot built with it is only as fresh as that list)."""
        return bool(self._by_resource)

    def list_whole(self, api: StripeApi, owned: OwnedList, max_pages: int) -> tuple[int, bool]:
        """List `owned` for the whole account if it ends within `max_pages` pages, and keep it by customer.

        Returns (pages requested, whether the list was kept). A longer list is dropped after `max_pages` requests
        and its customers are listed one by one as ever; so is a list whose cursor object was deleted between
        two pages (an invoice item, say: Stripe answers 404 for `starting_after`).
        """
        by_customer: dict[str, list[StripeJson]] = {}
        starting_after: str | None = None
        for pages in range(1, max_pages + 1):  # bounded: at most max_pages requests
            cursor = {"starting_after": starting_after} if starting_after else {}
            try:
                page = api.list_page(owned.resource, {**owned.params, **cursor})
            except stripe.InvalidRequestError as error:
                if error.param != "starting_after":
                    raise
                return pages, False
            for obj in page.data:
                owner = customer_of(obj)
                if owner is not None:
                    by_customer.setdefault(owner, []).append(obj)
            if not page.has_more or page.last_id is None:
                self._by_resource[owned.resource] = by_customer
                return pages, True
            if page.last_id == starting_after:
                raise PagingError(f"list {owned.resource.value}: the page after {starting_after} ends on it again")
            starting_after = page.last_id
        return max_pages, False

    def objects(self, resource: StripeList, customer_id: str) -> list[StripeJson] | None:
        """The customer's objects of a list kept whole; None when that list was not (list it per customer)."""
        by_customer = self._by_resource.get(resource)
        return None if by_customer is None else by_customer.get(customer_id, [])


# What `fetch_customer_records` adds to an owned list's parameters: refunds with their charges.
_PER_CUSTOMER_EXPAND: dict[StripeList, tuple[str, ...]] = {StripeList.CHARGES: CHARGE_REFUNDS_EXPAND}
# The customer, expanded on its first list that has an object (docs.stripe.com/api/expanding_objects: an id field
# can be expanded into the object a retrieve answers, `data.`-prefixed on a list); two levels.
_CUSTOMER_EXPAND = "data.customer"


def fetch_customer_records(
    api: StripeApi,
    customer_id: str,
    *,
    last_known: StripeJson | None = None,
    deletions: RecentDeletions | None = None,
    account_lists: AccountLists | None = None,
) -> CustomerRecords:
    """Everything of one customer, straight from Stripe (incremental and one-customer sync).

    A live customer costs one request per owned list it is not in `account_lists` for (docs/snapshot-format.md
    "Requests per customer"): the customer itself comes expanded on the first of its lists that has an object,
    and is retrieved only when none has. A customer known to be deleted (`last_known`), or found deleted on the
    way, is fetched the way a deleted customer needs (`_fetch_deleted_or_retrieved`).
    """
    if last_known is None:
        records = _fetch_live_customer(api, customer_id, account_lists)
        if records is not None:
            return records
    return _fetch_deleted_or_retrieved(
        api, customer_id, last_known=last_known, deletions=deletions, account_lists=account_lists
    )


def _fetch_live_customer(
    api: StripeApi, customer_id: str, account_lists: AccountLists | None
) -> CustomerRecords | None:
    """The records of a customer Stripe still has, or None when it turns out deleted (nothing is kept then)."""
    records = CustomerRecords(customer_id)
    customer: StripeJson | None = None
    for owned in OWNED_LISTS:
        listed = account_lists.objects(owned.resource, customer_id) if account_lists is not None else None
        if listed is None:
            params = _per_customer(owned, customer_id, expand_customer=customer is None)
            try:
                listed = list(api.list_all(owned.resource, params))
            except stripe.InvalidRequestError as error:
                # "No such customer" (deleted since the change was seen), or a customer the expansion cannot
                # find: the retrieve-first path asks for the customer itself and says what Stripe answers.
                if error.http_status == 404 or error.param == "expand":
                    return None
                raise
        for obj in listed:
            expanded = obj.get("customer")
            if isinstance(expanded, dict):
                if expanded.get("deleted") is True:
                    return None
                customer = customer or expanded
                # As Stripe renders it unexpanded: the id, in its place among the keys.
                obj = {**obj, "customer": expanded.get("id")}
            records.add(owned.resource, complete(api, owned.resource, obj))
    if customer is None:  # no object in any list (a lead, say): ask for the customer itself
        customer = api.retrieve(StripeList.CUSTOMERS, customer_id)
        if customer.get("deleted") is True:
            return None
    records.set_customer(customer)
    return records


def _per_customer(owned: OwnedList, customer_id: str, *, expand_customer: bool = False) -> dict[str, Any]:
    """The parameters of one customer's list: the owned list's, with the per-customer expansions."""
    expand = [*owned.params.get("expand", []), *_PER_CUSTOMER_EXPAND.get(owned.resource, ())]
    if expand_customer:
        expand.append(_CUSTOMER_EXPAND)
    return {**owned.params, "customer": customer_id, **({"expand": expand} if expand else {})}


def _fetch_deleted_or_retrieved(
    api: StripeApi,
    customer_id: str,
    *,
    last_known: StripeJson | None,
    deletions: RecentDeletions | None,
    account_lists: AccountLists | None,
) -> CustomerRecords:
    """The customer retrieved first, then its lists; for a deleted one, its subscriptions as Stripe lists them.

    A deleted customer's objects in `account_lists` are what the backfill's global lists give for it too."""
    records = CustomerRecords(customer_id)
    customer = api.retrieve(StripeList.CUSTOMERS, customer_id)
    if customer.get("deleted") is True and last_known is None:
        last_known = (deletions or RecentDeletions(api)).last_known(customer_id)
    records.set_customer(customer, last_known=last_known)
    for owned in OWNED_LISTS:
        if records.deleted and owned.resource is StripeList.SUBSCRIPTIONS:
            continue  # `status=all` may leave them out: `add_subscriptions_of_deleted_customer` below
        listed = account_lists.objects(owned.resource, customer_id) if account_lists is not None else None
        try:
            for obj in (
                listed if listed is not None else api.list_all(owned.resource, _per_customer(owned, customer_id))
            ):
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
    api: StripeApi,
    catalog: Catalog,
    customer_id: str,
    *,
    last_known: StripeJson | None = None,
    account_lists: AccountLists | None = None,
) -> CustomerSnapshot:
    records = fetch_customer_records(api, customer_id, last_known=last_known, account_lists=account_lists)
    return assemble_snapshot(records, catalog)
