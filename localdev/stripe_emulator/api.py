"""The read-only Stripe API the exporter uses, as routes on the emulator kit's router.

Endpoints and filters follow the pinned package's `*ListParams` (docs/sources.md#stripe-lists); list semantics live in
`listing.py`, object shapes in `render.py`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localdev.emulator_kit import Request, Response, Router, json_response
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.errors import StripeApiError, invalid, no_such
from localdev.stripe_emulator.listing import (
    Page,
    as_list,
    expand,
    expand_list_element,
    paginate,
    parse_params,
)
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
EVENT_RETENTION_SECONDS = 30 * 86_400  # events are listable for 30 days (docs/sources.md#stripe-events)
MAX_EVENT_TYPES = 20

Params = dict[str, Any]
Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Listing:
    """One list endpoint: its collection, the object kind named in errors, and its filters."""

    resource: str
    kind: str
    filters: Callable[[StripeStore, Params], tuple[list[tuple[str, str]], list[Predicate]]] = field(
        default=lambda store, params: ([], [])
    )


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


LISTINGS: dict[str, Listing] = {
    "customers": Listing("customers", "customer", _customer_filters),
    "products": Listing("products", "product"),
    "prices": Listing("prices", "price", _price_filters),
    "coupons": Listing("coupons", "coupon"),
    "tax_rates": Listing("tax_rates", "tax_rate"),
    "subscriptions": Listing("subscriptions", "subscription", _subscription_filters),
    "subscription_items": Listing("subscription_items", "subscription_item", _subscription_item_filters),
    "subscription_schedules": Listing("subscription_schedules", "subscription_schedule", _by_equal("customer")),
    "invoices": Listing("invoices", "invoice", _invoice_filters),
    "invoiceitems": Listing("invoiceitems", "invoiceitem", _invoice_item_filters),
    "invoice_payments": Listing("invoice_payments", "invoice_payment", _invoice_payment_filters),
    "payment_intents": Listing("payment_intents", "payment_intent", _by_equal("customer")),
    "charges": Listing("charges", "charge", _by_equal("customer", "payment_intent")),
    "refunds": Listing("refunds", "refund", _by_equal("charge", "payment_intent")),
    "credit_notes": Listing("credit_notes", "credit_note", _by_equal("customer", "invoice")),
    "events": Listing("events", "event", _event_filters),
}


class StripeApi:
    """Answers API requests from a store; `store.now` is the emulator's clock."""

    def __init__(self, store: StripeStore, lock: threading.RLock | None = None) -> None:
        self.store = store
        # Requests run on the server's threads; scenario steps and clock moves change the store. One lock keeps
        # a page from seeing a half-applied step (and the lazy indexes from being rebuilt twice at once).
        self.lock = lock or threading.RLock()
        self._request_ids = itertools.count(1)

    # ---- pure request handling (also usable without HTTP) ------------------------------------------

    def list_objects(self, resource: str, params: Params) -> Json:
        listing = LISTINGS[resource]
        store = self.store
        page = Page.parse(params)
        collection = store.collection(resource)
        equal, checks = listing.filters(store, params)
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
        invoice = self.store.invoices.get(invoice_id)
        if invoice is None:
            raise no_such("invoice", invoice_id, param="invoice")
        lines = [line_item(self.store, line, self.store.now) for line in invoice.lines]
        return self._page_of_embedded(lines, params, f"/v1/invoices/{invoice_id}/lines", "line_item")

    def credit_note_lines(self, note_id: str, params: Params) -> Json:
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
        if error is None:
            return None
        return json_response(error.status, error.body(request_id), {"Request-Id": request_id})

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
