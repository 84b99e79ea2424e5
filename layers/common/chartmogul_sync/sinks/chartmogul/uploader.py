"""Applies one customer bundle to ChartMogul through the per-object Import API (upload mode `api`).

The work is the pure diff (apply.py) carried out step by step, each write remembered in the id map the moment it
succeeds. A duplicate answer means ChartMogul has what the id map forgot (a crash after the write, a bulk import):
the object is looked up, remembered, and the diff is made again; a write is never repeated blindly. So a bundle
delivered twice, replayed from a DLQ, or re-sent after a crash ends in the same ChartMogul state with no duplicates.
"""

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NoReturn

import chartmogul
from aws_lambda_powertools import Logger

from chartmogul_sync.models import CustomerBundle

from .apply import (
    KnownCustomer,
    KnownPlan,
    KnownSubscription,
    WritePlan,
    bundle_digest,
    cancellation_dates,
    customer_create_payload,
    customer_fields,
    customer_patch_payload,
    event_payload,
    invoice_payload,
    plan_create_payload,
    plan_fields,
    plan_writes,
    transaction_payload,
)
from .attributes import CustomAttributeDefinitions
from .client import ChartMogulApi, ChartMogulError, FailureKind, TimeBudget
from .idmap import IdMap, Overtaken, with_invoices
from .leases import CustomerLeases

logger = Logger(child=True)

# Each round ends in an empty diff or a duplicate answer that taught the id map something; a bundle needs at most
# a few (customer, then invoices, then transactions). More means something keeps changing under us: retry later.
MAX_ROUNDS = 5
# "All new invoices of a customer in one request"; the cap only bounds the body of a years-long first import.
MAX_INVOICES_PER_REQUEST = 500
# The note of a customer head dropped because another apply holds its customer's lease (`apply_head`).
HEAD_LEASE_BUSY = "customer head: another upload is applying this customer, which creates it"


class Outcome(StrEnum):
    APPLIED = "applied"  # writes were made
    UNCHANGED = "unchanged"  # ChartMogul already matched the bundle: no writes
    STALE = "stale"  # older than the last bundle applied for the customer: skipped


@dataclass
class ApplyResult:
    customer_external_id: str
    outcome: Outcome
    writes: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # things skipped on purpose, with the reason
    # Subscriptions whose cancellation was skipped in this apply (ChartMogul has no line of theirs): not retried
    # in the next round of the same apply, tried again with the next bundle.
    cancellations_skipped: set[str] = field(default_factory=set)


class BundleRefused(Exception):
    """ChartMogul refused part of the bundle for good: the record belongs on the bad-records queue."""

    def __init__(self, customer_external_id: str, error: ChartMogulError, object_id: str | None = None) -> None:
        detail = error.details[0] if error.details else None
        self.customer_external_id = customer_external_id
        self.error = error
        self.object_id = (detail.object_id if detail and detail.object_id else None) or object_id
        self.field = detail.field if detail else None
        super().__init__(f"customer {customer_external_id}: {error}")


class _Relearned(Exception):
    """The id map learned something from ChartMogul mid-plan: make the diff again."""


def snapshot_version(bundle: CustomerBundle) -> str:
    # Fixed width, so versions compare correctly as strings (StateTable.put_if_newer compares strings).
    return bundle.snapshot_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BundleUploader:
    def __init__(self, api: ChartMogulApi, idmap: IdMap, leases: CustomerLeases) -> None:
        self._api = api
        self.idmap = idmap
        self.leases = leases
        # Per customer being applied: the objects ChartMogul already answered "exists" for in this apply. A
        # second such answer after relearning means the object is not ours to find: see `_unresolvable`.
        self._duplicates: dict[str, set[str]] = {}
        self.custom_attributes = CustomAttributeDefinitions(api)  # created before an update uses them

    def apply(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        """Apply one bundle while holding its customer's lease (leases.py); raises LeaseUnavailable (transient)."""
        if bundle.customer_only:
            return self.apply_head(bundle, budget)
        with self.leases.hold_one(bundle.customer.external_id, budget):
            return self.apply_held(bundle, budget)

    def apply_head(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        """A customer head (`apply_customer_only`) under its customer's lease, held for its one request only.

        The lease is not waited for: whoever holds it is applying this customer's bundle, which creates the
        customer itself, so the head is dropped with a note (it never fails for it, and is never redelivered).
        """
        customer_id = bundle.customer.external_id
        try:
            with self.leases.hold_if_free(customer_id, budget) as held:
                if held:
                    return self.apply_customer_only(bundle, budget)
        except Exception as error:  # the lease could not be asked for: the full bundle will do the work
            logger.warning(
                "customer head not applied: its full bundle will create the customer",
                extra={"customer_external_id": customer_id, "error": f"{type(error).__name__}: {error}"},
            )
            return ApplyResult(
                customer_id,
                Outcome.UNCHANGED,
                notes=[f"customer head not applied ({type(error).__name__}): left to the full bundle"],
            )
        return ApplyResult(customer_id, Outcome.UNCHANGED, notes=[HEAD_LEASE_BUSY])

    def apply_held(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        """Apply one bundle; the caller holds the customer's lease. The staleness decision is taken here, inside
        the exclusion, so a bundle overtaken by a newer one writes nothing."""
        customer_id = bundle.customer.external_id
        if bundle.customer_only:
            return self.apply_customer_only(bundle, budget)
        skipped = self.skip_reason(bundle)
        if skipped is not None:
            return skipped
        with self.idmap.writing(customer_id, snapshot_version(bundle)):
            try:
                return self._apply_diff(bundle, budget)
            except Overtaken as overtaken:
                return ApplyResult(customer_id, Outcome.STALE, notes=[str(overtaken)])

    def _apply_diff(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        customer_id = bundle.customer.external_id
        self._duplicates[customer_id] = set()
        try:
            return self._apply_rounds(bundle, budget)
        finally:
            del self._duplicates[customer_id]

    def _apply_rounds(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        customer_id = bundle.customer.external_id
        result = ApplyResult(customer_id, Outcome.UNCHANGED)
        for _round in range(MAX_ROUNDS):
            known = self.idmap.known_customer(customer_id)
            plans = self.idmap.known_plans(p.external_id for p in bundle.plans)
            writes = plan_writes(bundle, known, plans)
            if result.cancellations_skipped:
                kept = (
                    c
                    for c in writes.cancellations_to_set
                    if c.subscription_external_id not in result.cancellations_skipped
                )
                writes = replace(writes, cancellations_to_set=tuple(kept))
            if writes.is_empty:
                break
            try:
                self._execute(bundle, writes, known, plans, budget, result)
            except _Relearned:
                continue
        else:
            raise ChartMogulError(
                f"apply customer {customer_id}",
                FailureKind.TRANSIENT,
                retry_now=False,
                detail=f"ChartMogul's state did not settle after {MAX_ROUNDS} rounds",
            )
        self.record_applied(bundle)
        if result.writes:
            result.outcome = Outcome.APPLIED
        return result

    def apply_customer_only(self, bundle: CustomerBundle, budget: TimeBudget) -> ApplyResult:
        """A backfill's customer head (docs/architecture.md "Customer heads"); the caller holds the lease.

        Creates the customer, with its attributes, when the id map does not know it, and writes nothing else. No
        applied version is recorded: the customer's full bundle, of the same snapshot time, is applied as if the
        head had not been (its history then goes in a bulk import, `KnownCustomer.created_alone`). A head that
        fails is logged and dropped, whatever the reason: its full bundle creates the customer instead, and a
        refusal then reaches the bad-records queue with its reason, once.
        """
        customer_id = bundle.customer.external_id
        result = ApplyResult(customer_id, Outcome.UNCHANGED)
        try:
            if self.idmap.known_customer(customer_id).exists:
                result.notes.append("customer head: ChartMogul holds the customer already")
                return result
            created = self.create_customer_first(bundle, budget)
        except Exception as error:  # the full bundle will do it, and say why if it cannot
            logger.warning(
                "customer head not applied: its full bundle will create the customer",
                extra={"customer_external_id": customer_id, "error": f"{type(error).__name__}: {error}"},
            )
            result.notes.append(f"customer head not applied ({type(error).__name__}): left to the full bundle")
            return result
        if created is None:  # ChartMogul held it with invoices: the full bundle diffs against what was relearned
            result.notes.append("customer head: ChartMogul holds the customer already")
            return result
        result.outcome = Outcome.APPLIED
        result.writes["customers_created"] += 1
        return result

    def skip_reason(self, bundle: CustomerBundle) -> ApplyResult | None:
        """A result when the bundle must not be applied (older than, or the same as, the last one applied)."""
        customer_id = bundle.customer.external_id
        last = self.idmap.last_applied(customer_id)
        if last is None:
            return None
        version, digest = snapshot_version(bundle), bundle_digest(bundle)
        if last[0] > version:
            return ApplyResult(customer_id, Outcome.STALE, notes=[f"older than the bundle applied last ({last[0]})"])
        if last == (version, digest):
            return ApplyResult(customer_id, Outcome.UNCHANGED, notes=["this bundle was applied already"])
        return None

    def record_applied(self, bundle: CustomerBundle) -> None:
        customer_id = bundle.customer.external_id
        if not self.idmap.record_applied(customer_id, snapshot_version(bundle), bundle_digest(bundle)):
            # A newer bundle of this customer was applied while we worked: its writes stand (logged for audit).
            logger.warning("a newer bundle was applied meanwhile", extra={"customer_external_id": customer_id})

    # ------------------------------------------------------------ carrying out a plan

    def _execute(
        self,
        bundle: CustomerBundle,
        writes: WritePlan,
        known: KnownCustomer,
        plans: dict[str, KnownPlan],
        budget: TimeBudget,
        result: ApplyResult,
    ) -> None:
        customer_id = bundle.customer.external_id
        if writes.customer_to_delete:
            self._delete_customer(customer_id, known, budget, result)
            return
        for plan in writes.plans_to_create:
            try:
                created = self._write(
                    customer_id,
                    plan.external_id,
                    f"create plan {plan.external_id}",
                    lambda cfg, plan=plan: chartmogul.Plan.create(
                        cfg, data=plan_create_payload(plan, self.idmap.data_source_uuid)
                    ).get(),
                    budget,
                )
            except ChartMogulError as error:
                self._relearn_plan(customer_id, plan.external_id, error, budget)
            self.idmap.remember_plan(plan.external_id, KnownPlan(uuid=str(created.uuid), fields=plan_fields(plan)))
            result.writes["plans_created"] += 1
        for plan in writes.plans_to_update:
            uuid = self._plan_uuid(customer_id, plan.external_id, plans, budget)
            self._write(
                customer_id,
                plan.external_id,
                f"update plan {plan.external_id}",
                lambda cfg, plan=plan, uuid=uuid: chartmogul.Plan.modify(cfg, uuid=uuid, data=plan_fields(plan)).get(),
                budget,
            )
            self.idmap.remember_plan(plan.external_id, KnownPlan(uuid=uuid, fields=plan_fields(plan)))
            result.writes["plans_updated"] += 1

        if writes.customer_to_create is not None:
            known = self._create_customer(bundle, budget)
            result.writes["customers_created"] += 1
        if writes.customer_changes:
            uuid = self._customer_uuid(customer_id, known, budget)
            body = customer_patch_payload(writes.customer_changes)
            try:
                # api mode and the API pass after a bulk import both update attributes here (attributes.py)
                custom = (writes.customer_changes.get("attributes") or {}).get("custom") or []
                self.custom_attributes.ensure_created(customer_id, uuid, custom, budget)
                self._write(
                    customer_id,
                    customer_id,
                    f"update customer {customer_id}",
                    lambda cfg: chartmogul.Customer.modify(cfg, uuid=uuid, data=body).get(),
                    budget,
                )
            except ChartMogulError as error:
                self._relearn_customer(customer_id, error, budget)
            known = replace(known, uuid=uuid, fields=customer_fields(bundle.customer))
            self.idmap.remember_customer(customer_id, known)
            result.writes["customers_updated"] += 1

        for invoice_id in writes.invoices_to_delete:
            known = self._delete_invoice(customer_id, invoice_id, known, budget)
            result.writes["invoices_deleted"] += 1

        if writes.invoices_to_create:
            known = self._create_invoices(bundle, writes, known, budget, result)

        for invoice_id, txn in writes.transactions_to_add:
            invoice_uuid = known.invoices.get(invoice_id)
            if invoice_uuid is None:
                invoice_uuid, known = self._invoice_uuid(customer_id, invoice_id, known, budget)
                if txn.external_id in known.transactions:  # the lookup showed it there already
                    continue
            try:
                added = self._write(
                    customer_id,
                    txn.external_id,
                    f"add transaction {txn.external_id} to invoice {invoice_id}",
                    lambda cfg, uuid=invoice_uuid, txn=txn: chartmogul.Transaction.create(
                        cfg, uuid=uuid, data=transaction_payload(txn)
                    ).get(),
                    budget,
                )
            except ChartMogulError as error:
                if error.kind is not FailureKind.ALREADY_EXISTS:
                    raise
                # Added before a crash: learn the invoice's transactions as ChartMogul holds them.
                found = self.idmap.lookup_invoice(invoice_id, budget)
                self.idmap.remember_customer(customer_id, with_invoices(known, [found] if found else []))
                raise _Relearned from error
            # stored but invalid (docs/sources.md#cm-invalid-invoices): removed, a bad record naming it
            if getattr(added, "errors", None):
                self._delete(
                    customer_id,
                    txn.external_id,
                    f"delete invalid transaction {txn.external_id}",
                    lambda cfg, uuid=str(added.uuid): chartmogul.Transaction.destroy(cfg, uuid=uuid).get(),
                    budget,
                )
                objects = [{"object": "transaction", "external_id": txn.external_id, "errors": added.errors}]
                raise stored_invalid(customer_id, f"add transaction {txn.external_id} to invoice {invoice_id}", objects)
            known = replace(known, transactions=known.transactions | {txn.external_id})
            self.idmap.remember_customer(customer_id, known)
            result.writes["transactions_added"] += 1

        for cancellation in writes.cancellations_to_set:
            sub_id = cancellation.subscription_external_id
            sub = known.subscriptions.get(sub_id)
            if sub is None or sub.uuid is None:
                known = self.idmap.refresh_customer(customer_id, budget)
                sub = known.subscriptions.get(sub_id)
            if sub is None or sub.uuid is None:
                result.notes.append(f"cancellation of {sub_id} skipped: ChartMogul has no invoice line for it")
                result.cancellations_skipped.add(sub_id)
                continue
            dates = cancellation_dates(cancellation)
            try:
                self._write(
                    customer_id,
                    sub_id,
                    f"set cancellation dates of subscription {sub_id}",
                    # docs/sources.md#cm-subscriptions: `cancellation_dates` replaces the history whole, so re-sending
                    # it is harmless.
                    lambda cfg, uuid=sub.uuid, dates=dates: chartmogul.CustomerSubscription.cancel(
                        cfg, uuid=uuid, data={"cancellation_dates": list(dates)}
                    ).get(),
                    budget,
                )
            except ChartMogulError as error:
                if error.kind is not FailureKind.NOT_FOUND:
                    raise
                # Deleted by hand in ChartMogul: heal as a customer 404 heals, by learning what ChartMogul holds
                # now (its invoices, so missing ones are imported again) and making the diff again.
                self.idmap.refresh_customer(customer_id, budget)
                raise _Relearned from error
            subscriptions = {**known.subscriptions, sub_id: KnownSubscription(sub.uuid, dates)}
            known = replace(known, subscriptions=subscriptions)
            self.idmap.remember_customer(customer_id, known)
            result.writes["cancellations_set"] += 1

        for event in writes.events_to_create:
            payload = event_payload(event, self.idmap.data_source_uuid)
            try:
                self._write(
                    customer_id,
                    event.external_id,
                    f"create subscription event {event.external_id}",
                    lambda cfg, payload=payload: chartmogul.SubscriptionEvent.create(
                        cfg, data={"subscription_event": payload}
                    ).get(),
                    budget,
                )
                result.writes["events_created"] += 1
            except ChartMogulError as error:
                if error.kind is not FailureKind.ALREADY_EXISTS:
                    raise
                if self.idmap.lookup_event_id(event.external_id, budget) is None:
                    raise self._unresolvable(customer_id, event.external_id, error) from error
            known = replace(known, events=known.events | {event.external_id})
            self.idmap.remember_customer(customer_id, known)

    def create_customer_first(self, bundle: CustomerBundle, budget: TimeBudget) -> KnownCustomer | None:
        """Create the bundle's customer alone, with its attributes, and remember it; the caller holds the lease.

        For a bulk import (bulk.py): the bulk format carries no attributes, and setting them afterwards costs a
        lookup of the new customer's uuid and an update; created here, the customer costs one request and its uuid
        is known for what follows (cancellations).

        When ChartMogul already holds the customer, what it holds is relearned (a lookup and its invoices). Holding
        no invoice, which is what an earlier create of ours leaves (a request that timed out after ChartMogul
        took it, then retried; or a crash), it is returned as if created now: its records still go in the import,
        and the API pass after it corrects any field that differs. Holding invoices, None: the caller applies the
        whole bundle through the API, which diffs it against what was relearned.
        """
        customer_id = bundle.customer.external_id
        with self.idmap.writing(customer_id, snapshot_version(bundle)):
            self._duplicates[customer_id] = set()
            try:
                return self._create_customer(bundle, budget)
            except _Relearned:
                held = self.idmap.known_customer(customer_id)
                return held if held.created_alone else None
            finally:
                del self._duplicates[customer_id]

    def _create_customer(self, bundle: CustomerBundle, budget: TimeBudget) -> KnownCustomer:
        customer_id = bundle.customer.external_id
        payload = customer_create_payload(bundle.customer, self.idmap.data_source_uuid)
        try:
            created = self._write(
                customer_id,
                customer_id,
                f"create customer {customer_id}",
                lambda cfg: chartmogul.Customer.create(cfg, data=payload).get(),
                budget,
            )
        except ChartMogulError as error:
            self._relearn_customer(customer_id, error, budget)
        # A create that carried typed custom attributes created their definitions (attributes.py).
        self.custom_attributes.remember(bundle.customer.model_dump(mode="json")["attributes"]["custom"])
        known = KnownCustomer(exists=True, uuid=str(created.uuid), fields=customer_fields(bundle.customer))
        self.idmap.remember_customer(customer_id, known)
        return known

    def _create_invoices(
        self, bundle: CustomerBundle, writes: WritePlan, known: KnownCustomer, budget: TimeBudget, result: ApplyResult
    ) -> KnownCustomer:
        customer_id = bundle.customer.external_id
        customer_uuid = self._customer_uuid(customer_id, known, budget)
        known = replace(known, uuid=customer_uuid)
        plans = self.idmap.known_plans(p.external_id for p in bundle.plans)
        plan_uuids = {ext: self._plan_uuid(customer_id, ext, plans, budget) for ext in plans}
        invoices = list(writes.invoices_to_create)
        for start in range(0, len(invoices), MAX_INVOICES_PER_REQUEST):
            chunk = invoices[start : start + MAX_INVOICES_PER_REQUEST]
            body = {"invoices": [invoice_payload(i, plan_uuids, customer_id) for i in chunk]}
            try:
                answer = self._write(
                    customer_id,
                    chunk[0].external_id,
                    f"import {len(chunk)} invoices of customer {customer_id}",
                    lambda cfg, body=body: chartmogul.Invoice.create(cfg, uuid=customer_uuid, data=body).get(),
                    budget,
                )
            except ChartMogulError as error:
                self._relearn_customer(customer_id, error, budget)
            imported = list(answer.invoices)
            known = with_invoices(known, imported)
            self.idmap.remember_customer(customer_id, known)
            result.writes["invoices_created"] += len(imported)
            # docs/sources.md#cm-invalid-invoices: ChartMogul may store an invoice, line item or transaction it finds
            # invalid instead of refusing it (201 with an `errors` map on that object: SDK 4.9+ test bodies). Keep the
            # outcome all-or-nothing per invoice: delete it again and send the record to the bad records, naming the
            # object.
            invalid = [i for i in imported if invalid_objects(i)]
            for bad in invalid:
                known = self._delete_invoice(customer_id, bad.external_id, known, budget)
            if invalid:
                objects = [found for i in invalid for found in invalid_objects(i)]
                raise stored_invalid(customer_id, f"import invoices of customer {customer_id}", objects)
        return known

    def _delete_customer(self, customer_id: str, known: KnownCustomer, budget: TimeBudget, result: ApplyResult) -> None:
        if known.merged:
            # The surviving customer holds other customers' data too: deleting it would delete theirs.
            raise BundleRefused(
                customer_id,
                ChartMogulError(
                    f"delete customer {customer_id}",
                    FailureKind.PERMANENT,
                    detail=(
                        f"customer {customer_id} was deleted in the billing system, but in ChartMogul it was merged "
                        f"into customer {known.uuid}, which holds other data: delete or unmerge it in ChartMogul"
                    ),
                ),
                customer_id,
            )
        uuid = known.uuid or self.idmap.lookup_customer_uuid(customer_id, budget)
        if uuid is not None:
            deleted = self._delete(
                customer_id,
                customer_id,
                f"delete customer {customer_id}",
                lambda cfg: chartmogul.Customer.destroy(cfg, uuid=uuid).get(),
                budget,
            )
            if deleted:
                result.writes["customers_deleted"] += 1
        self.idmap.remember_customer(customer_id, KnownCustomer(deleted=True))

    def _delete_invoice(
        self, customer_id: str, invoice_id: str, known: KnownCustomer, budget: TimeBudget
    ) -> KnownCustomer:
        uuid = known.invoices.get(invoice_id)
        if uuid is None:
            found = self.idmap.lookup_invoice(invoice_id, budget)
            uuid = None if found is None else str(found.uuid)
        if uuid is not None:
            self._delete(
                customer_id,
                invoice_id,
                f"delete invoice {invoice_id}",
                lambda cfg: chartmogul.Invoice.destroy(cfg, uuid=uuid).get(),
                budget,
            )
        known = replace(known, invoices={k: v for k, v in known.invoices.items() if k != invoice_id})
        self.idmap.remember_customer(customer_id, known)
        return known

    # ------------------------------------------------------------ helpers

    def _write(self, customer_id: str, object_id: str, operation: str, request: Any, budget: TimeBudget) -> Any:
        """One write; a permanent refusal becomes BundleRefused naming the object."""
        try:
            return self._api.call(operation, request, budget)
        except ChartMogulError as error:
            if error.kind is FailureKind.PERMANENT:
                raise BundleRefused(customer_id, error, object_id) from error
            if error.kind is FailureKind.ALREADY_EXISTS:
                seen = self._duplicates.setdefault(customer_id, set())
                if object_id in seen:
                    raise self._unresolvable(customer_id, object_id, error) from error
                seen.add(object_id)
            raise

    def _unresolvable(self, customer_id: str, object_id: str, error: ChartMogulError) -> BundleRefused:
        """ChartMogul says the object exists, yet it is not among this customer's objects in our data source
        even after asking ChartMogul: another customer holds the external id. Retrying cannot help."""
        refusal = ChartMogulError(
            error.operation,
            FailureKind.PERMANENT,
            status=error.status,
            body=error.body,
            detail=(
                f"{object_id} already exists in ChartMogul, but not under customer {customer_id} of this data "
                f"source (ChartMogul said: {error}). Another customer holds this external id: if two customers "
                "were merged in ChartMogul by hand, unmerge them; if the id is reused in the billing system, "
                "delete the other object in ChartMogul; then replay this record (cmsync dlq replay)"
            ),
        )
        return BundleRefused(customer_id, refusal, object_id)

    def _delete(self, customer_id: str, object_id: str, operation: str, request: Any, budget: TimeBudget) -> bool:
        """One delete; False when ChartMogul no longer had the object (gone already: that is what we wanted)."""
        try:
            self._write(customer_id, object_id, operation, request, budget)
        except ChartMogulError as error:
            if error.kind is not FailureKind.NOT_FOUND:
                raise
            return False
        return True

    def _relearn_customer(self, customer_id: str, error: ChartMogulError, budget: TimeBudget) -> NoReturn:
        """After a duplicate (created before a crash) or a 404 (our uuid is stale): ask ChartMogul, diff again."""
        if error.kind is FailureKind.ALREADY_EXISTS:
            self.idmap.refresh_customer(customer_id, budget)
            raise _Relearned from error
        if error.kind is FailureKind.NOT_FOUND:
            self.idmap.forget_customer(customer_id)
            raise _Relearned from error
        if error.kind is FailureKind.PERMANENT:
            raise BundleRefused(customer_id, error, customer_id) from error
        raise error

    def _relearn_plan(self, customer_id: str, plan_id: str, error: ChartMogulError, budget: TimeBudget) -> NoReturn:
        if error.kind is not FailureKind.ALREADY_EXISTS:
            raise error
        found = self.idmap.lookup_plan(plan_id, budget)
        if found is None:
            raise BundleRefused(customer_id, error, plan_id) from error
        self.idmap.remember_plan(plan_id, found)
        raise _Relearned from error

    def _customer_uuid(self, customer_id: str, known: KnownCustomer, budget: TimeBudget) -> str:
        if known.uuid:
            return known.uuid
        uuid = self.idmap.lookup_customer_uuid(customer_id, budget)
        if uuid is None:  # the id map said it exists, ChartMogul says it does not: start over for this customer
            self.idmap.forget_customer(customer_id)
            raise _Relearned
        self.idmap.remember_customer(customer_id, replace(known, uuid=uuid))
        return uuid

    def _plan_uuid(self, customer_id: str, plan_id: str, plans: dict[str, KnownPlan], budget: TimeBudget) -> str:
        plan = plans.get(plan_id)
        if plan is not None and plan.uuid:
            return plan.uuid
        found = self.idmap.lookup_plan(plan_id, budget)
        if found is None or found.uuid is None:
            self.idmap.forget_plan(plan_id)
            raise _Relearned
        self.idmap.remember_plan(plan_id, KnownPlan(uuid=found.uuid, fields=plan.fields if plan else found.fields))
        return found.uuid

    def _invoice_uuid(
        self, customer_id: str, invoice_id: str, known: KnownCustomer, budget: TimeBudget
    ) -> tuple[str, KnownCustomer]:
        """The uuid of an invoice the id map knows only by external id, and what the lookup taught."""
        found = self.idmap.lookup_invoice(invoice_id, budget)
        if found is None:  # not there after all: forget it, so that the next diff imports it
            forgotten = replace(known, invoices={k: v for k, v in known.invoices.items() if k != invoice_id})
            self.idmap.remember_customer(customer_id, forgotten)
            raise _Relearned
        known = with_invoices(known, [found])
        self.idmap.remember_customer(customer_id, known)
        return str(found.uuid), known


def stored_invalid(customer_id: str, operation: str, objects: list[dict[str, Any]]) -> BundleRefused:
    """The bad record for objects ChartMogul stored with `errors`: names the first one and ChartMogul's words."""
    error = ChartMogulError(operation, FailureKind.PERMANENT, status=201, body=json.dumps({"invalid_objects": objects}))
    return BundleRefused(customer_id, error, object_id=objects[0]["external_id"])


def invalid_objects(invoice: Any) -> list[dict[str, Any]]:
    """The objects of an imported invoice that ChartMogul stored with `errors`, invoice first, then its line items
    and transactions: `{"object", "external_id", "invoice_external_id", "errors"}` each (a line without an
    external id is named by its position)."""
    found: list[dict[str, Any]] = []
    invoice_id = str(getattr(invoice, "external_id", None) or "?")
    parts = [("invoice", invoice_id, invoice)]
    parts += [
        ("line_item", str(getattr(li, "external_id", None) or f"{invoice_id}.line_items[{n}]"), li)
        for n, li in enumerate(getattr(invoice, "line_items", None) or [])
    ]
    parts += [
        ("transaction", str(getattr(tx, "external_id", None) or f"{invoice_id}.transactions[{n}]"), tx)
        for n, tx in enumerate(getattr(invoice, "transactions", None) or [])
    ]
    for kind, external_id, part in parts:
        errors = getattr(part, "errors", None)
        if errors:
            found.append(
                {"object": kind, "external_id": external_id, "invoice_external_id": invoice_id, "errors": errors}
            )
    return found
