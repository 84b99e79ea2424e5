"""The read-only Stripe API the exporter uses, as routes on the emulator kit's router.

Endpoints and filters follow the pinned package's `*ListParams` (docs/sources.md#stripe-lists); list semantics live in
`listing.py`, object shapes in `render.py`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localdev.emulator_kit import Request, Response, Router, json_response
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.errors import StripeApiError, invalid, no_such
from localdev.stripe_emulator.listing import (
    Page,
    as_list,
    check_expand_depth,
    expand,
    expand_list_element,
    paginate,
    parse_params,
)
from localdev.stripe_emulator.params import check_params
from localdev.stripe_emulator.render import (
    API_VERSION,
    SUPPORTED_API_VERSIONS,
    Json,
    credit_note_line,
    deleted_customer,
    line_item,
    list_object,
    render,
)
from localdev.stripe_emulator.store import Collection, StripeStore

_REQUEST_ID_HEADER = "x-emulator-request-id"
EVENT_RETENTION_SECONDS = 30 * 86_400  # events are listable for 30 days (docs.stripe.com/api/events/list)
MAX_EVENT_TYPES = 20

Params = dict[str, Any]
Predicate = Callable[[Any], bool]


# Parameters every list takes (pagination, `created`, `expand`) and every retrieve takes (`expand`).
LIST_PARAMS = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})
RETRIEVE_PARAMS = frozenset({"expand"})


@dataclass(frozen=True)
class Listing:
    """One list endpoint: its collection, the object kind named in errors, its filters and its parameters.

    `params` names the stripe package's params classes (`<params>ListParams`, `<params>RetrieveParams`): what
    Stripe accepts (`params.py`); `implemented` are the filters `filters` acts on, on top of `LIST_PARAMS`.
    """

    resource: str
    kind: str
    params: str
    filters: Callable[[StripeStore, Params], tuple[list[tuple[str, str]], list[Predicate]]] = field(
        default=lambda store, params: ([], [])
    )
    implemented: tuple[str, ...] = ()

    def check_list(self, params: Params) -> None:
        check_params(f"{self.params}ListParams", params, implemented=LIST_PARAMS | frozenset(self.implemented))

    def check_retrieve(self, params: Params) -> None:
        check_params(f"{self.params}RetrieveParams", params, implemented=RETRIEVE_PARAMS)


def _equal(params: Params, *names: str) -> list[tuple[str, str]]:
    """Equality filters given in the request, as (record field, value) for the collection's indexes."""
    return [(name, str(params[name])) for name in names if params.get(name) not in (None, "")]


def _customer_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    now = store.now
    checks: list[Predicate] = [lambda c: c.deleted_at is None or c.deleted_at > now]  # deleted are not listed
    if params.get("email"):
        email = str(params["email"])
        checks.append(lambda c: c.email == email)
    return [], checks


def _price_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    checks: list[Predicate] = []
    if params.get("currency"):
        currency = str(params["currency"]).lower()
        checks.append(lambda p: p.currency == currency)
    if params.get("type"):
        price_type = params["type"]
        checks.append(lambda p: p.type == price_type)
    recurring = params.get("recurring")
    if isinstance(recurring, dict):
        if recurring.get("interval"):
            interval = recurring["interval"]
            checks.append(lambda p: p.interval == interval)
        if recurring.get("usage_type"):
            usage = recurring["usage_type"]
            checks.append(lambda p: p.usage_type == usage)
    return _equal(params, "product"), checks


_ENDED = frozenset({"canceled", "incomplete_expired"})


def _subscription_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    status = params.get("status")
    checks: list[Predicate] = []
    if status != "canceled":
        # Stripe documents only `status=canceled` as returning "all canceled subscriptions, including those
        # belonging to deleted customers" (stripe/params/_subscription_list_params.py `status`): every other
        # status, `all` included, leaves a deleted customer's subscriptions out here.
        customers, now = store.customers, store.now
        checks.append(lambda s: not _deleted_at(customers.get(s.customer), now))
    # The default list omits canceled subscriptions; `all` lists every status (docs/sources.md#stripe-lists,
    # #stripe-pitfalls).
    if status is None:
        checks.append(lambda s: s.status != "canceled")
    elif status == "ended":
        checks.append(lambda s: s.status in _ENDED)
    elif status != "all":
        wanted = str(status)
        checks.append(lambda s: s.status == wanted)
    if params.get("collection_method"):
        method = params["collection_method"]
        checks.append(lambda s: s.collection_method == method)
    price_id = params.get("price") or params.get("plan")
    if price_id:
        items = store.subscription_items
        checks.append(lambda s: any(_item_price(items, item_id) == price_id for item_id in s.items))
    return _equal(params, "customer"), checks


def _deleted_at(customer: r.Customer | None, now: int) -> bool:
    return customer is not None and customer.deleted_at is not None and customer.deleted_at <= now


def _item_price(items: Collection[r.SubscriptionItem], item_id: str) -> str | None:
    item = items.get(item_id)
    return item.history[-1].price if item else None


def _subscription_item_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    if not params.get("subscription"):
        raise invalid("Missing required param: subscription.", param="subscription")
    return _equal(params, "subscription"), [lambda item: item.deleted_at is None]


def _invoice_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    checks: list[Predicate] = []
    if params.get("status"):
        status = str(params["status"])
        if status not in ("draft", "open", "paid", "uncollectible", "void"):
            raise invalid("Invalid status: must be one of draft, open, paid, uncollectible, or void", "status")
        checks.append(lambda inv: inv.status == status)
    if params.get("collection_method"):
        method = params["collection_method"]
        checks.append(lambda inv: inv.collection_method == method)
    return _equal(params, "customer", "subscription"), checks


def _invoice_item_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    checks: list[Predicate] = []
    if params.get("pending") in ("true", "false"):
        pending = params["pending"] == "true"
        checks.append(lambda item: (item.invoice is None) == pending)
    return _equal(params, "customer", "invoice"), checks


def _invoice_payment_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    equal = _equal(params, "invoice")
    payment = params.get("payment")
    if isinstance(payment, dict) and payment.get("payment_intent"):
        equal.append(("payment_intent", str(payment["payment_intent"])))
    checks: list[Predicate] = []
    if params.get("status"):
        status = str(params["status"])
        now = store.now
        checks.append(lambda p: p.status_at(now) == status)
    return equal, checks


def _event_filters(store: StripeStore, params: Params) -> tuple[list[tuple[str, str]], list[Predicate]]:
    types = as_list(params.get("types"))
    if params.get("type") and types:
        raise invalid("You may only specify one of these parameters: type, types.", param="types")
    if len(types) > MAX_EVENT_TYPES:
        raise invalid(f"You may only specify up to {MAX_EVENT_TYPES} types.", param="types")
    single = params.get("type")
    if single and "*" not in str(single):
        return [("type", str(single))], []
    if single:  # wildcard such as `invoice.*`
        prefix = str(single).split("*", 1)[0]
        return [], [lambda e: e.type.startswith(prefix)]
    if types:
        wanted = frozenset(types)
        return [], [lambda e: e.type in wanted]
    return [], []


def _by_equal(*names: str) -> Callable[[StripeStore, Params], tuple[list[tuple[str, str]], list[Predicate]]]:
    return lambda store, params: (_equal(params, *names), [])


# The read permission a restricted key needs per resource. `rak_subscription_read` is recorded
# (tylerjrichards/st-paywall#45); the others follow the same `rak_<object>_read` pattern of Stripe's restricted-key
# permissions (https://docs.stripe.com/keys#limit-access), a documented guess for the names.
READ_PERMISSIONS: dict[str, str] = {
    "customers": "rak_customer_read",
    "products": "rak_product_read",
    "prices": "rak_plan_read",
    "coupons": "rak_coupon_read",
    "tax_rates": "rak_tax_rate_read",
    "subscriptions": "rak_subscription_read",
    "subscription_items": "rak_subscription_read",
    "subscription_schedules": "rak_subscription_schedule_read",
    "invoices": "rak_invoice_read",
    "invoiceitems": "rak_invoice_read",
    "invoice_payments": "rak_invoice_read",
    "payment_intents": "rak_payment_intent_read",
    "charges": "rak_charge_read",
    "refunds": "rak_refund_read",
    "credit_notes": "rak_credit_note_read",
    "events": "rak_event_read",
}

LISTINGS: dict[str, Listing] = {
    "customers": Listing("customers", "customer", "Customer", _customer_filters, ("email",)),
    "products": Listing("products", "product", "Product"),
    "prices": Listing("prices", "price", "Price", _price_filters, ("currency", "type", "recurring", "product")),
    "coupons": Listing("coupons", "coupon", "Coupon"),
    "tax_rates": Listing("tax_rates", "tax_rate", "TaxRate"),
    "subscriptions": Listing(
        "subscriptions",
        "subscription",
        "Subscription",
        _subscription_filters,
        ("status", "collection_method", "price", "plan", "customer"),
    ),
    "subscription_items": Listing(
        "subscription_items", "subscription_item", "SubscriptionItem", _subscription_item_filters, ("subscription",)
    ),
    "subscription_schedules": Listing(
        "subscription_schedules", "subscription_schedule", "SubscriptionSchedule", _by_equal("customer"), ("customer",)
    ),
    "invoices": Listing(
        "invoices", "invoice", "Invoice", _invoice_filters, ("status", "collection_method", "customer", "subscription")
    ),
    "invoiceitems": Listing(
        "invoiceitems", "invoiceitem", "InvoiceItem", _invoice_item_filters, ("pending", "customer", "invoice")
    ),
    "invoice_payments": Listing(
        "invoice_payments",
        "invoice_payment",
        "InvoicePayment",
        _invoice_payment_filters,
        ("invoice", "payment", "status"),
    ),
    "payment_intents": Listing(
        "payment_intents", "payment_intent", "PaymentIntent", _by_equal("customer"), ("customer",)
    ),
    "charges": Listing(
        "charges", "charge", "Charge", _by_equal("customer", "payment_intent"), ("customer", "payment_intent")
    ),
    "refunds": Listing(
        "refunds", "refund", "Refund", _by_equal("charge", "payment_intent"), ("charge", "payment_intent")
    ),
    "credit_notes": Listing(
        "credit_notes", "credit_note", "CreditNote", _by_equal("customer", "invoice"), ("customer", "invoice")
    ),
    "events": Listing("events", "event", "Event", _event_filters, ("type", "types")),
}


class StripeApi:
    """Answers API requests from a store; `store.now` is the emulator's clock."""

    def __init__(
        self,
        store: StripeStore,
        lock: threading.RLock | None = None,
        event_list_lag_s: int = 0,
        restricted_keys: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.store = store
        # Stripe's events list is eventually consistent: an event may show up in it a while after its `created`,
        # behind newer ones (connectors re-read a window behind their cursor, e.g. Airbyte source-stripe's
        # `lookback_window_days`, airbyte-integrations/connectors/source-stripe/source_stripe/spec.yaml).
        # With a lag, each event joins the list between 0 and `event_list_lag_s` seconds after its `created`
        # (fixed per event id); retrieving it by id works at once.
        self.event_list_lag_s = event_list_lag_s
        # Restricted keys (`rk_…`) with the permissions they hold; any other valid key may read everything.
        self.restricted_keys = dict(restricted_keys or {})
        # Requests run on the server's threads; scenario steps and clock moves change the store. One lock keeps
        # a page from seeing a half-applied step (and the lazy indexes from being rebuilt twice at once).
        self.lock = lock or threading.RLock()
        self._request_ids = itertools.count(1)

    # ---- pure request handling (also usable without HTTP) ------------------------------------------

    def list_objects(self, resource: str, params: Params) -> Json:
        listing = LISTINGS[resource]
        listing.check_list(params)
        store = self.store
        page = Page.parse(params)
        collection = store.collection(resource)
        equal, checks = listing.filters(store, params)
        if resource == "events" and self.event_list_lag_s > 0:
            lag, now = self.event_list_lag_s, store.now
            checks.append(lambda event: event_listed_after(event.id, lag) + event.created <= now)
        if resource == "events":
            page = Page(
                page.limit,
                page.starting_after,
                page.ending_before,
                page.created.narrowed(store.now - EVENT_RETENTION_SECONDS),
                page.expand,
            )
        view = collection.newest_first()
        remaining = list(equal)
        # Start from the smallest index among the equality filters; check the others per record.
        candidates = [(collection.indexed(name, value), name, value) for name, value in equal]
        indexed = [(found, name, value) for found, name, value in candidates if found is not None]
        if indexed:
            view, name, value = min(indexed, key=lambda entry: len(entry[0]))
            remaining.remove((name, value))
        for name, value in remaining:
            checks.append(_field_equals(name, value))
        records, has_more = paginate(collection, view, page, lambda rec: all(c(rec) for c in checks), listing.kind)
        data = [render(store, resource, record, store.now) for record in records]
        for obj in data:
            for path in page.expand:
                expand_list_element(store, obj, path, store.now)
        return list_object(data, f"/v1/{resource}", has_more)

    def retrieve(self, resource: str, object_id: str, params: Params) -> Json:
        listing = LISTINGS[resource]
        listing.check_retrieve(params)
        check_expand_depth(as_list(params.get("expand")))
        store = self.store
        record = store.collection(resource).get(object_id)
        if record is None:
            raise no_such(listing.kind, object_id)
        if isinstance(record, r.Event) and record.created < store.now - EVENT_RETENTION_SECONDS:
            raise no_such("event", object_id)  # retrievable for 30 days only
        if isinstance(record, r.Customer) and record.deleted_at is not None and record.deleted_at <= store.now:
            return deleted_customer(record)
        obj = render(store, resource, record, store.now)
        for path in as_list(params.get("expand")):
            expand(store, obj, path, store.now)
        return obj

    def invoice_lines(self, invoice_id: str, params: Params) -> Json:
        check_params("InvoiceLineItemListParams", params, implemented=LIST_PARAMS - {"created"})
        invoice = self.store.invoices.get(invoice_id)
        if invoice is None:
            raise no_such("invoice", invoice_id, param="invoice")
        lines = [line_item(self.store, line, self.store.now) for line in invoice.lines]
        return self._page_of_embedded(lines, params, f"/v1/invoices/{invoice_id}/lines", "line_item")

    def credit_note_lines(self, note_id: str, params: Params) -> Json:
        check_params("CreditNoteLineItemListParams", params, implemented=LIST_PARAMS - {"created"})
        note = self.store.credit_notes.get(note_id)
        if note is None:
            raise no_such("credit_note", note_id, param="credit_note")
        lines = [credit_note_line(self.store, line) for line in note.lines]
        return self._page_of_embedded(lines, params, f"/v1/credit_notes/{note_id}/lines", "credit_note_line")

    def _page_of_embedded(self, objects: list[Json], params: Params, url: str, kind: str) -> Json:
        """Sub-lists (invoice lines) keep the parent's order, not newest first, as Stripe does."""
        page = Page.parse(params)
        ids = [obj["id"] for obj in objects]
        if page.starting_after is not None:
            if page.starting_after not in ids:
                raise no_such(kind, page.starting_after, param="starting_after")
            start = ids.index(page.starting_after) + 1
            chosen = objects[start : start + page.limit]
            has_more = start + page.limit < len(objects)
        elif page.ending_before is not None:
            if page.ending_before not in ids:
                raise no_such(kind, page.ending_before, param="ending_before")
            end = ids.index(page.ending_before)
            chosen = objects[max(0, end - page.limit) : end]
            has_more = end - page.limit > 0
        else:
            chosen = objects[: page.limit]
            has_more = len(objects) > page.limit
        for obj in chosen:
            for path in page.expand:
                expand_list_element(self.store, obj, path, self.store.now)
        return list_object(chosen, url, has_more)

    # ---- HTTP ---------------------------------------------------------------------------------------

    def next_request_id(self) -> str:
        return f"req_emu{next(self._request_ids):014d}"

    def respond(self, request: Request, answer: Callable[[Params], Json]) -> Response:
        request_id = request.header(_REQUEST_ID_HEADER) or self.next_request_id()
        version = request.header("stripe-version") or API_VERSION
        headers = {"Request-Id": request_id, "Stripe-Version": version}
        try:
            pairs = [(key, value) for key, values in request.query.items() for value in values]
            with self.lock:
                body = answer(parse_params(pairs))
        except StripeApiError as exc:
            return json_response(exc.status, exc.body(request_id), headers)
        return json_response(200, body, headers)

    def check_request(self, request: Request) -> Response | None:
        """Authentication and `Stripe-Version`, before any route (the kit's `before_request` hook)."""
        request_id = self.next_request_id()
        request.headers[_REQUEST_ID_HEADER] = request_id  # one id per request, reused by the route's answer
        key = _api_key(request)
        expected = "live" if self.store.livemode else "test"
        error: StripeApiError | None = None
        if key is None:
            error = StripeApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        elif not (key.startswith(f"sk_{expected}_") or key.startswith(f"rk_{expected}_")):
            error = StripeApiError(
                401, f"Invalid API Key provided: {key[:8]}****{key[-4:]} (this emulator runs in {expected} mode)"
            )
        else:
            version = request.header("stripe-version")
            if version is not None and version not in SUPPORTED_API_VERSIONS:
                error = invalid(
                    f"Invalid Stripe API version: {version}. This emulator renders {API_VERSION} shapes only."
                )
            elif key in self.restricted_keys:
                error = self._missing_permission(key, request.path)
        if error is None:
            return None
        return json_response(error.status, error.body(request_id), {"Request-Id": request_id})

    def _missing_permission(self, key: str, path: str) -> StripeApiError | None:
        """A restricted key without the read permission of the requested resource: Stripe's 403.

        Message and status as Stripe answers them (recorded in stripe/stripe-node#2246 and
        tylerjrichards/st-paywall#45: HTTP 403, type `invalid_request_error`, "Having the 'rak_…' permission would
        allow this request to continue."); stripe-python raises `PermissionError` for a 403.
        """
        resource = path.removeprefix("/v1/").split("/", 1)[0]
        permission = READ_PERMISSIONS.get(resource)
        if permission is None or permission in self.restricted_keys[key]:
            return None
        masked = f"{key[:8]}{'*' * max(0, len(key) - 14)}{key[-6:]}"
        return StripeApiError(
            403,
            f"The provided key '{masked}' does not have the required permissions for this endpoint on account "
            f"'acct_emulated'. Having the '{permission}' permission would allow this request to continue.",
        )

    def router(self) -> Router:
        router = Router()
        for resource in LISTINGS:
            router.add("GET", f"/v1/{resource}", self._list_handler(resource))
            router.add("GET", f"/v1/{resource}/{{object_id}}", self._retrieve_handler(resource))
        router.add(
            "GET",
            "/v1/invoices/{invoice_id}/lines",
            lambda req: self.respond(req, lambda p: self.invoice_lines(req.params["invoice_id"], p)),
        )
        router.add(
            "GET",
            "/v1/credit_notes/{note_id}/lines",
            lambda req: self.respond(req, lambda p: self.credit_note_lines(req.params["note_id"], p)),
        )
        return router

    def _list_handler(self, resource: str) -> Callable[[Request], Response]:
        return lambda request: self.respond(request, lambda params: self.list_objects(resource, params))

    def _retrieve_handler(self, resource: str) -> Callable[[Request], Response]:
        return lambda request: self.respond(
            request, lambda params: self.retrieve(resource, request.params["object_id"], params)
        )


def event_listed_after(event_id: str, max_lag_s: int) -> int:
    """Seconds after its `created` an event joins the events list, in [0, max_lag_s]: the same for every run."""
    return zlib.crc32(event_id.encode()) % (max_lag_s + 1)


def _field_equals(name: str, value: str) -> Predicate:
    return lambda record: bool(getattr(record, name) == value)


def _api_key(request: Request) -> str | None:
    """Bearer auth (stripe-python) or HTTP basic with the key as user name (`curl -u sk_test_...:`)."""
    header = request.header("authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            user = base64.b64decode(value).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None
