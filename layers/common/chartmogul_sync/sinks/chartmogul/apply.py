"""The diff: one customer's desired state (the bundle) against what ChartMogul already holds → the minimal writes.

Pure: no I/O, no clock. `plan_writes` compares a CustomerBundle with `KnownCustomer` / `KnownPlan` (what the id map
remembers, idmap.py) and returns a `WritePlan`; `uploader.py` carries it out. The payload builders here are shared
by the per-object API and the bulk import (bulk.py), so both modes send the same fields.

Applying a bundle whose objects are all known yields an empty plan: that is what makes a replay write nothing
(docs/architecture.md "Contracts between the stages").
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chartmogul_sync.models import (
    Cancellation,
    Customer,
    CustomerBundle,
    Invoice,
    LineItem,
    OneTimeLineItem,
    Plan,
    SubscriptionEvent,
    Transaction,
)

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class KnownPlan:
    uuid: str | None  # None: it exists (imported in bulk), its uuid not looked up yet
    fields: JsonDict | None  # name and interval as ChartMogul holds them; None = not known


@dataclass(frozen=True)
class KnownSubscription:
    uuid: str | None
    # As last set by us (sorted ISO strings); None = never set by us or not known.
    cancellation_dates: tuple[str, ...] | None = None


@dataclass(frozen=True)
class KnownCustomer:
    """What ChartMogul holds for one customer of our data source, as far as the id map knows."""

    exists: bool = False
    uuid: str | None = None
    fields: JsonDict | None = None  # the fields as last written; None = not known (patch them all once)
    invoices: Mapping[str, str | None] = field(default_factory=dict)  # external id → uuid (None: not looked up)
    transactions: frozenset[str] = frozenset()
    subscriptions: Mapping[str, KnownSubscription] = field(default_factory=dict)
    events: frozenset[str] = frozenset()
    deleted: bool = False  # we deleted it (deleted in the source, config `deleted_customers: delete`)
    # Merged in ChartMogul into another customer (`uuid` is the surviving one): its history goes there, its
    # fields are the surviving customer's and are not written (docs/mapping-decisions.md "Merged customers").
    merged: bool = False

    @property
    def created_alone(self) -> bool:
        """Created, with nothing of its history yet: what a customer head (or a create before a crash) leaves. Its
        history can still go in a bulk import, which creates and does not diff (bulk.py)."""
        return (
            self.exists
            and self.uuid is not None
            and not (self.merged or self.deleted)
            and not (self.invoices or self.transactions or self.subscriptions or self.events)
        )


@dataclass(frozen=True)
class WritePlan:
    """The writes that bring ChartMogul to the bundle's state, in the order they must be made."""

    customer_to_delete: bool = False
    plans_to_create: tuple[Plan, ...] = ()
    plans_to_update: tuple[Plan, ...] = ()
    customer_to_create: Customer | None = None
    customer_changes: JsonDict = field(default_factory=dict)  # field → new value (PATCH body before shaping)
    invoices_to_delete: tuple[str, ...] = ()
    invoices_to_create: tuple[Invoice, ...] = ()
    transactions_to_add: tuple[tuple[str, Transaction], ...] = ()  # (invoice external id, transaction)
    cancellations_to_set: tuple[Cancellation, ...] = ()
    events_to_create: tuple[SubscriptionEvent, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.write_count == 0

    @property
    def write_count(self) -> int:
        """ChartMogul write requests this plan needs (all new invoices travel in one request)."""
        return (
            int(self.customer_to_delete)
            + len(self.plans_to_create)
            + len(self.plans_to_update)
            + int(self.customer_to_create is not None)
            + int(bool(self.customer_changes))
            + len(self.invoices_to_delete)
            + int(bool(self.invoices_to_create))
            + len(self.transactions_to_add)
            + len(self.cancellations_to_set)
            + len(self.events_to_create)
        )

    def summary(self) -> dict[str, int]:
        return {
            "customers_deleted": int(self.customer_to_delete),
            "plans_created": len(self.plans_to_create),
            "plans_updated": len(self.plans_to_update),
            "customers_created": int(self.customer_to_create is not None),
            "customers_updated": int(bool(self.customer_changes)),
            "invoices_deleted": len(self.invoices_to_delete),
            "invoices_created": len(self.invoices_to_create),
            "transactions_added": len(self.transactions_to_add),
            "cancellations_set": len(self.cancellations_to_set),
            "events_created": len(self.events_to_create),
        }


def plan_writes(bundle: CustomerBundle, known: KnownCustomer, known_plans: Mapping[str, KnownPlan]) -> WritePlan:
    """The minimal writes from `known` to `bundle` (pure)."""
    if bundle.deleted_in_source:
        # docs/mapping-decisions.md "Deleted customers": with `deleted_customers: delete` the customer goes, with
        # everything it holds; nothing else of the bundle is written.
        return WritePlan(customer_to_delete=not known.deleted)
    plans_to_create = tuple(p for p in bundle.plans if p.external_id not in known_plans)
    plans_to_update = tuple(
        p for p in bundle.plans if p.external_id in known_plans and known_plans[p.external_id].fields != plan_fields(p)
    )
    desired_fields = customer_fields(bundle.customer)
    customer_changes: JsonDict
    if not known.exists:
        customer_to_create, customer_changes = bundle.customer, {}
    elif known.merged:
        customer_to_create, customer_changes = None, {}
    elif known.fields is None:
        customer_to_create, customer_changes = None, {k: v for k, v in desired_fields.items() if v is not None}
    else:
        customer_to_create = None
        customer_changes = {k: v for k, v in desired_fields.items() if known.fields.get(k) != v}

    invoices_to_delete = tuple(x for x in bundle.removed_invoice_external_ids if x in known.invoices)
    invoices_to_create = tuple(i for i in bundle.invoices if i.external_id not in known.invoices)
    transactions_to_add = tuple(
        (invoice.external_id, txn)
        for invoice in bundle.invoices
        if invoice.external_id in known.invoices
        for txn in invoice.transactions
        if txn.external_id not in known.transactions
    )
    return WritePlan(
        plans_to_create=plans_to_create,
        plans_to_update=plans_to_update,
        customer_to_create=customer_to_create,
        customer_changes=customer_changes,
        invoices_to_delete=invoices_to_delete,
        invoices_to_create=invoices_to_create,
        transactions_to_add=transactions_to_add,
        cancellations_to_set=_cancellations_to_set(bundle, known),
        events_to_create=tuple(e for e in bundle.subscription_events if e.external_id not in known.events),
    )


def _cancellations_to_set(bundle: CustomerBundle, known: KnownCustomer) -> tuple[Cancellation, ...]:
    wanted = {c.subscription_external_id: c for c in bundle.cancellations}
    changes: list[Cancellation] = [
        c
        for c in bundle.cancellations
        if (sub := known.subscriptions.get(c.subscription_external_id)) is None
        or sub.cancellation_dates != cancellation_dates(c)
    ]
    # A subscription we cancelled that the bundle no longer cancels (reactivated, or a cancellation taken back):
    # `cancellation_dates` replaces the history whole (docs/sources.md#cm-subscriptions), so send it empty.
    in_bundle = bundle.subscription_external_ids()
    for external_id, sub in sorted(known.subscriptions.items()):
        if external_id not in wanted and external_id in in_bundle and sub.cancellation_dates:
            changes.append(Cancellation(subscription_external_id=external_id, cancellation_dates=[]))
    return tuple(changes)


# ---------------------------------------------------------------- payloads (shared by api and bulk modes)


def _json(model: Any, **kwargs: Any) -> JsonDict:
    dumped: JsonDict = model.model_dump(mode="json", **kwargs)
    return dumped


def customer_fields(customer: Customer) -> JsonDict:
    """The customer's fields we own, as compared between runs (None values included: a cleared field differs)."""
    return _json(customer, exclude={"external_id"})


def customer_create_payload(customer: Customer, data_source_uuid: str) -> JsonDict:
    return {"data_source_uuid": data_source_uuid, **_json(customer, exclude_none=True)}


def customer_patch_payload(changes: Mapping[str, Any]) -> JsonDict:
    """PATCH /customers/{uuid} body (docs/sources.md#cm-customers): custom attributes go as a key → value map there."""
    body = {k: v for k, v in changes.items() if k != "attributes"}
    if "attributes" in changes:
        attributes = changes["attributes"] or {}
        body["attributes"] = {
            "tags": list(attributes.get("tags", [])),
            "custom": {item["key"]: item["value"] for item in attributes.get("custom", [])},
        }
    return body


def plan_fields(plan: Plan) -> JsonDict:
    return _json(plan, include={"name", "interval_count", "interval_unit"})


def plan_create_payload(plan: Plan, data_source_uuid: str) -> JsonDict:
    return {"data_source_uuid": data_source_uuid, "external_id": plan.external_id, **plan_fields(plan)}


def line_item_payload(line: LineItem) -> JsonDict:
    """A line item as both modes send it; the per-object API swaps `plan_external_id` for `plan_uuid`."""
    return _json(line, exclude_none=True)


def transaction_payload(txn: Transaction) -> JsonDict:
    return _json(txn, exclude_none=True)


def invoice_payload(invoice: Invoice, plan_uuids: Mapping[str, str], customer_external_id: str) -> JsonDict:
    """POST /import/customers/{uuid}/invoices entry (docs/sources.md#cm-invoice-import): line items refer to plans by
    uuid."""
    lines = []
    for line in invoice.line_items:
        payload = line_item_payload(line)
        if not isinstance(line, OneTimeLineItem):
            payload["plan_uuid"] = plan_uuids[payload.pop("plan_external_id")]
        lines.append(payload)
    head = _json(invoice, exclude_none=True, exclude={"line_items", "transactions"})
    return {
        **head,
        "customer_external_id": customer_external_id,
        "line_items": lines,
        "transactions": [transaction_payload(t) for t in invoice.transactions],
    }


def event_payload(event: SubscriptionEvent, data_source_uuid: str) -> JsonDict:
    return {"data_source_uuid": data_source_uuid, **_json(event, exclude_none=True)}


def cancellation_dates(cancellation: Cancellation) -> tuple[str, ...]:
    return tuple(sorted(_json(cancellation)["cancellation_dates"]))


def bundle_digest(bundle: CustomerBundle) -> str:
    """Identifies a bundle's content: the transform is deterministic, so equal content means equal bytes."""
    return hashlib.sha256(bundle.model_dump_json().encode()).hexdigest()
