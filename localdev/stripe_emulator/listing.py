"""Stripe's request-parameter encoding, list pagination and `expand`, as pure functions (docs/sources.md#stripe-lists to
#stripe-expand).

- Parameters arrive form-encoded with brackets: stripe-python sends `created[gte]=1` and `expand[0]=data.customer`
  (indexed arrays); curl users write `expand[]=...`. Both decode to nested dicts and lists.
- Lists are newest first; `limit` 1–100 (default 10); `starting_after` / `ending_before` take an object id;
  the answer is `{"object": "list", "data", "has_more", "url"}`.
- `expand` replaces an id by its object; list responses take `data.`-prefixed paths; at most 4 levels, counted
  as the path's dot-separated parts (`data.payment_intent.customer.default_source` is the deepest expansion a
  charge list allows: docs.stripe.com/api/expanding_objects; localstripe counts the same way,
  adrienverge/localstripe `localstripe/resources.py`, PR #118 "Like the real Stripe API does").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.errors import invalid, no_such
from localdev.stripe_emulator.render import EMBEDDED_LINES, Json, list_object, render
from localdev.stripe_emulator.store import Collection, StripeStore

MAX_LIMIT = 100
DEFAULT_LIMIT = 10
MAX_EXPAND_DEPTH = 4

R = TypeVar("R", bound=r.Record)

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_params(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Decode `a[b][c]=v`, `a[]=v` and `a[0]=v` pairs into nested dicts and lists."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if match is None:
            raise invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                # `a[]` appends; a list holding dicts (a[][x]) is not something the exporter sends.
                node.append(value if last else {})
                node = node[-1]
                continue
            if last:
                node[part] = value
            else:
                following = parts[index + 1]
                if part not in node:
                    node[part] = [] if following == "" else {}
                node = node[part]
    decoded: dict[str, Any] = _lists_from_indexed(root)
    return decoded


def _lists_from_indexed(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {key: _lists_from_indexed(value) for key, value in node.items()}
        if converted and all(key.isdigit() for key in converted):
            return [converted[key] for key in sorted(converted, key=int)]
        return converted
    if isinstance(node, list):
        return [_lists_from_indexed(value) for value in node]
    return node


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def parse_int(value: Any, param: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise invalid(f"Invalid integer: {value}", param=param) from None


@dataclass(frozen=True)
class CreatedRange:
    """`created` as an integer or `{gt, gte, lt, lte}`; the bounds are inclusive after normalisation."""

    low: int | None = None
    high: int | None = None

    @classmethod
    def parse(cls, value: Any, param: str = "created") -> CreatedRange:
        if value is None:
            return cls()
        if not isinstance(value, dict):
            exact = parse_int(value, param)
            return cls(exact, exact)
        low = high = None
        for op, raw in value.items():
            bound = parse_int(raw, f"{param}[{op}]")
            if op == "gt":
                low = bound + 1
            elif op == "gte":
                low = bound
            elif op == "lt":
                high = bound - 1
            elif op == "lte":
                high = bound
            else:
                raise invalid(f"Invalid {param}[{op}]: must be one of gt, gte, lt, or lte", param=param)
        return cls(low, high)

    def narrowed(self, low: int | None) -> CreatedRange:
        if low is None:
            return self
        return CreatedRange(low if self.low is None else max(low, self.low), self.high)

    def contains(self, created: int) -> bool:
        return (self.low is None or created >= self.low) and (self.high is None or created <= self.high)


@dataclass(frozen=True)
class Page:
    limit: int
    starting_after: str | None
    ending_before: str | None
    created: CreatedRange
    expand: list[str]

    @classmethod
    def parse(cls, params: dict[str, Any]) -> Page:
        limit = parse_int(params.get("limit", DEFAULT_LIMIT), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid(
                f"This value must be greater than or equal to 1 and less than or equal to {MAX_LIMIT}.",
                param="limit",
            )
        starting_after = params.get("starting_after") or None
        ending_before = params.get("ending_before") or None
        if starting_after and ending_before:
            raise invalid("You may only specify one of these parameters: ending_before, starting_after.")
        return cls(
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=CreatedRange.parse(params.get("created")),
            expand=check_expand_depth(as_list(params.get("expand"))),
        )


def check_expand_depth(paths: list[str]) -> list[str]:
    """The paths, unless one is deeper than Stripe allows (4 levels, the `data.` of a list included)."""
    for path in paths:
        if len(path.split(".")) > MAX_EXPAND_DEPTH:
            raise invalid(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
    return paths


def paginate(
    collection: Collection[R],
    view: list[R],
    page: Page,
    matches: Callable[[R], bool],
    kind: str,
) -> tuple[list[R], bool]:
    """One page of `view` (newest first) after the cursor, inside `page.created`, of records that match."""
    created = page.created
    if page.ending_before is not None:
        cursor = collection.get(page.ending_before)
        if cursor is None:
            raise no_such(kind, page.ending_before, param="ending_before")
        # The `limit` matching records just newer than the cursor, still returned newest first.
        found: list[R] = []
        index = collection.position_of(view, cursor) - 1
        while index >= 0 and len(found) <= page.limit:
            record = view[index]
            if created.high is not None and record.created > created.high:
                break
            if created.contains(record.created) and matches(record):
                found.append(record)
            index -= 1
        has_more = len(found) > page.limit
        return list(reversed(found[: page.limit])), has_more

    start = 0
    if page.starting_after is not None:
        cursor = collection.get(page.starting_after)
        if cursor is None:
            raise no_such(kind, page.starting_after, param="starting_after")
        start = collection.position_after(view, cursor)
    if created.high is not None:
        start = max(start, collection.first_created_before(view, created.high, inclusive=True))
    found = []
    index = start
    while index < len(view) and len(found) <= page.limit:
        record = view[index]
        if created.low is not None and record.created < created.low:
            break
        if matches(record):
            found.append(record)
        index += 1
    return found[: page.limit], len(found) > page.limit


# --- expand -------------------------------------------------------------------------------------------------

_PREFIXES: tuple[tuple[str, str], ...] = (
    ("cus_", "customers"),
    ("prod_", "products"),
    ("price_", "prices"),
    ("txr_", "tax_rates"),
    ("di_", "discounts"),
    ("sub_sched_", "subscription_schedules"),
    ("sub_", "subscriptions"),
    ("si_", "subscription_items"),
    ("inpay_", "invoice_payments"),
    ("in_", "invoices"),
    ("ii_", "invoiceitems"),
    ("pi_", "payment_intents"),
    ("ch_", "charges"),
    ("re_", "refunds"),
    ("cn_", "credit_notes"),
    ("evt_", "events"),
)
# Fields whose ids have no telling prefix (coupon ids are chosen by the merchant).
_FIELD_RESOURCES = {"coupon": "coupons"}


def _resource_of(field: str, object_id: str) -> str | None:
    if field in _FIELD_RESOURCES:
        return _FIELD_RESOURCES[field]
    for prefix, resource in _PREFIXES:
        if object_id.startswith(prefix):
            return resource
    return None


def _lookup(store: StripeStore, field: str, object_id: str, at: int) -> Json:
    resource = _resource_of(field, object_id)
    record = store.collection(resource).get(object_id) if resource else None
    if resource is None or record is None:
        raise invalid(f"This property cannot be expanded ({field}).", param="expand")
    if isinstance(record, r.Customer) and record.deleted_at is not None and record.deleted_at <= at:
        return {"id": record.id, "object": "customer", "deleted": True}
    return render(store, resource, record, at)


def _includable(store: StripeStore, obj: Json, field: str, at: int) -> Json | None:
    """Fields Stripe leaves out unless expanded, e.g. `invoice.payments` (docs/sources.md#stripe-expand)."""
    if obj.get("object") == "invoice" and field == "payments":
        payments = store.invoice_payments.indexed("invoice", obj["id"]) or []
        return list_object(
            [render(store, "invoice_payments", p, at) for p in payments],
            f"/v1/invoice_payments?invoice={obj['id']}",
        )
    if obj.get("object") == "charge" and field == "refunds":
        # Since 2022-11-15 a charge's refunds are expandable only (docs.stripe.com/changelog/2022-11-15/
        # deprecates-charges-auto-expand; stripe 16.1.0 `stripe/_charge.py` `refunds: Optional[ListObject[Refund]]`):
        # a sublist of the first ten (as many as an invoice embeds lines: Stripe gives no figure for this one),
        # newest first as `GET /v1/refunds?charge=` lists them, so that list's `starting_after` goes on where the
        # sublist ends.
        refunds = [ref for ref in store.refunds.indexed("charge", obj["id"]) or [] if ref.created <= at]
        return list_object(
            [render(store, "refunds", ref, at) for ref in refunds[:EMBEDDED_LINES]],
            f"/v1/charges/{obj['id']}/refunds",
            has_more=len(refunds) > EMBEDDED_LINES,
        )
    if obj.get("object") == "customer" and field == "subscriptions":
        subs = store.subscriptions.indexed("customer", obj["id"]) or []
        return list_object(
            [render(store, "subscriptions", s, at) for s in subs if s.status_at(at) != "canceled"],
            f"/v1/customers/{obj['id']}/subscriptions",
        )
    return None


def expand(store: StripeStore, obj: Json, path: str, at: int) -> None:
    """Expand one dotted path in place (its depth is checked before: `check_expand_depth`)."""
    head, _, rest = path.partition(".")
    if head not in obj:
        included = _includable(store, obj, head, at)
        if included is None:
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        obj[head] = included
    value = obj[head]
    if value is None:
        return
    if not isinstance(value, str | list | dict):
        raise invalid(f"This property cannot be expanded ({head}).", param="expand")
    if isinstance(value, str):
        obj[head] = value = _lookup(store, head, value, at)
    if isinstance(value, list):
        for index, element in enumerate(value):
            if isinstance(element, str):
                value[index] = element = _lookup(store, head, element, at)
            if rest and isinstance(element, dict):
                expand(store, element, rest, at)
        return
    if not rest:
        return
    if isinstance(value, dict):
        if value.get("object") == "list" and rest.startswith("data."):
            for element in value["data"]:
                expand(store, element, rest[len("data.") :], at)
            return
        expand(store, value, rest, at)
        return
    raise invalid(f"This property cannot be expanded ({head}).", param="expand")


def expand_list_element(store: StripeStore, obj: Json, path: str, at: int) -> None:
    if not path.startswith("data."):
        raise invalid(
            f"This property cannot be expanded ({path}). List expansions take a `data.` prefix.",
            param="expand",
        )
    expand(store, obj, path[len("data.") :], at)


__all__ = [
    "CreatedRange",
    "Page",
    "as_list",
    "check_expand_depth",
    "expand",
    "expand_list_element",
    "paginate",
    "parse_params",
]
