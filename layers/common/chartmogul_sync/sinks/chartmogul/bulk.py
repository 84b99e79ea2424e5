"""Upload mode `bulk`: first imports of many customers through ChartMogul's JSON bulk import (`json_imports`).

docs/sources.md#cm-bulk-import: one POST of a flat JSON document (customers, plans, invoices, line items,
transactions, subscription events, cross-referenced by external id), at most 5 MB, best with 100–1,000 customers,
every record of a customer in the same request; processed asynchronously (`queued` → `processing` → `completed`),
with a status per customer in `status_details`.

What bulk mode sends and what it leaves to the per-object API (uploader.py), and why:
- Only customers ChartMogul holds nothing of yet go in bulk: the bulk format creates, it does not diff. A customer
  the id map knows is applied through the API, which writes only what changed; so is a customer to delete. A
  customer created alone, with none of its history (a backfill's customer head, docs/architecture.md "Customer
  heads"), still goes in bulk, its customer record left out.
- A customer head (`customer_only`) with tags or custom attributes creates its customer through the API, side by
  side with the batch's other heads, each under its own lease for its one request (`BundleUploader.apply_head`):
  its whole bundle would have created it so anyway, only later. One without either writes nothing: the import
  creates that customer, in the request that carries its history. Beside its customer's whole bundle in the same
  batch, a head is moot.
- The bulk format has no cancellations and no custom attributes (docs/sources.md#cm-bulk-import lists its fields). After
  a customer is imported, the API pass applies the rest of the bundle's diff: cancellations, tags and custom attributes.
  For a customer with neither, that pass makes no request.
- A customer whose import failed only because its objects already exist (a redelivered batch whose first import
  finished after all) is applied through the API, which treats duplicates as success. Any other per-customer
  failure is a permanent one, routed to the bad-records queue with ChartMogul's words.
- An import still unfinished when the time budget runs out fails its records transiently: SQS redelivers them,
  and by then their objects exist, which the API pass handles as above.
- A batch of 200 customers or more is imported in chunks (up to four, each at least the recommended 100
  customers): while ChartMogul processes one chunk's import, the next chunk is created and sent, so the instance
  keeps using its share of the rate instead of waiting. A chunk that needs a plan an unfinished import is
  creating waits for ChartMogul to finish that import (not for the API pass of its customers, which runs beside):
  the plan is sent once, and ChartMogul promises no order between imports.
"""

import functools
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import chartmogul
from aws_lambda_powertools import Logger

from chartmogul_sync.models import Customer, CustomerBundle, Plan

from .apply import (
    JsonDict,
    KnownCustomer,
    KnownPlan,
    customer_fields,
    line_item_payload,
    plan_fields,
    transaction_payload,
)
from .client import ChartMogulApi, ChartMogulError, ErrorDetail, FailureKind, TimeBudget, is_duplicate_only
from .idmap import Overtaken
from .leases import LeaseUnavailable
from .limiter import map_concurrently
from .uploader import ApplyResult, BundleRefused, BundleUploader, Outcome, snapshot_version

logger = Logger(child=True)

# docs/sources.md#cm-bulk-import: "≤ 5 MB"; kept under 5,000,000 bytes so that neither reading of MB can be exceeded.
MAX_PAYLOAD_BYTES = 5_000_000
MAX_CUSTOMERS_PER_IMPORT = 1_000
# A batch is imported in up to MAX_CHUNKS chunks of at least MIN_CUSTOMERS_PER_IMPORT customers (ChartMogul's
# recommended 100-1,000), so the next chunk's requests overlap ChartMogul's processing of the last (`_import`).
MIN_CUSTOMERS_PER_IMPORT = 100
MAX_CHUNKS = 4
# Polling: from a quarter second up to 5 s between looks, never more than this many looks.
FIRST_POLL_DELAY_S = 0.25
MAX_POLL_DELAY_S = 5.0
MAX_POLLS = 600
FINISHED = frozenset({"completed", "failed"})
IMPORTED = frozenset({"imported", "completed", "success", "succeeded"})


# ---------------------------------------------------------------- the payload (pure)


def customer_records(bundle: CustomerBundle, *, with_customer: bool = True) -> JsonDict:
    """One customer's records in the bulk format (plans apart: they are shared and sent once per import).

    `with_customer=False` leaves the customer record out, for a customer created through the API just before:
    the import's other records name it by external id, as records of a later import for an existing customer do.
    """
    customer = bundle.customer
    invoices, line_items, transactions = [], [], []
    for invoice in bundle.invoices:
        head = invoice.model_dump(mode="json", exclude_none=True, exclude={"line_items", "transactions"})
        invoices.append({**head, "customer_external_id": customer.external_id})
        line_items += [
            {"invoice_external_id": invoice.external_id, **line_item_payload(li)} for li in invoice.line_items
        ]
        transactions += [
            {"invoice_external_id": invoice.external_id, **transaction_payload(t)} for t in invoice.transactions
        ]
    return {
        "customers": [customer.model_dump(mode="json", exclude_none=True, exclude={"attributes"})]
        if with_customer
        else [],
        "invoices": invoices,
        "line_items": line_items,
        "transactions": transactions,
        "subscription_events": [e.model_dump(mode="json", exclude_none=True) for e in bundle.subscription_events],
    }


def plan_record(plan: Plan) -> JsonDict:
    return {"external_id": plan.external_id, **plan_fields(plan)}


_RECORD_KINDS = ("customers", "invoices", "line_items", "transactions", "subscription_events")


@dataclass
class BulkPayload:
    external_id: str
    bundles: list[CustomerBundle] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)
    records: JsonDict = field(default_factory=lambda: {k: [] for k in _RECORD_KINDS})
    size_bytes: int = 0

    def body(self) -> JsonDict:
        return {"external_id": self.external_id, "plans": [plan_record(p) for p in self.plans.values()], **self.records}


# Bytes a record list's JSON adds around its items, and the envelope keys: a safe over-estimate.
_ENVELOPE_BYTES = 512


def pack_payloads(
    bundles: Sequence[CustomerBundle],
    known_plans: Iterable[str],
    external_id_prefix: str,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_customers: int = MAX_CUSTOMERS_PER_IMPORT,
    created: Iterable[str] = (),
) -> tuple[list[BulkPayload], list[CustomerBundle]]:
    """Pack bundles into as few imports as fit the limits (pure); returns (payloads, bundles too big for any).

    Every record of a customer stays in one import (docs/sources.md#cm-bulk-import). Plans the id map does not know go
    with the first import that needs them. The customers in `created` exist already: their customer record is left
    out.
    """
    known = set(known_plans)
    exists = set(created)
    payloads: list[BulkPayload] = []
    too_big: list[CustomerBundle] = []
    current: BulkPayload | None = None
    for bundle in bundles:
        records = customer_records(bundle, with_customer=bundle.customer.external_id not in exists)
        new_plans = {p.external_id: p for p in bundle.plans if p.external_id not in known}
        size = _json_size(records) + _json_size([plan_record(p) for p in new_plans.values()])
        if size + _ENVELOPE_BYTES > max_bytes:
            too_big.append(bundle)
            continue
        if current is None or current.size_bytes + size > max_bytes or len(current.bundles) >= max_customers:
            current = BulkPayload(external_id=f"{external_id_prefix}-{len(payloads) + 1}", size_bytes=_ENVELOPE_BYTES)
            payloads.append(current)
        current.bundles.append(bundle)
        current.plans.update(new_plans)
        known.update(new_plans)
        for kind in _RECORD_KINDS:
            current.records[kind] += records[kind]
        current.size_bytes += size
    return payloads, too_big


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


@dataclass(frozen=True)
class CustomerImportStatus:
    imported: bool
    errors: tuple[str, ...] = ()

    @property
    def only_duplicates(self) -> bool:
        return is_duplicate_only([ErrorDetail(message=m) for m in self.errors])


def customer_statuses(status_details: Any, customer_ids: Iterable[str]) -> dict[str, CustomerImportStatus | None]:
    """Each customer's outcome from a finished import's `status_details` (pure); None = not reported.

    docs/sources.md#cm-bulk-import documents `{"<customer external id>": {"status": "imported", "invoices": {"status":
    ...}, ...}}`; the failure vocabulary is not documented, so any status other than an imported one is a failure, and
    the error messages are collected from wherever they appear under the customer's entry.
    """
    details = status_details if isinstance(status_details, dict) else {}
    result: dict[str, CustomerImportStatus | None] = {}
    for customer_id in customer_ids:
        entry = details.get(customer_id)
        if not isinstance(entry, dict):
            result[customer_id] = None
            continue
        statuses = [entry.get("status")] + [v.get("status") for v in entry.values() if isinstance(v, dict)]
        imported = all(s is None or str(s).lower() in IMPORTED for s in statuses) and entry.get("status") is not None
        result[customer_id] = CustomerImportStatus(imported=imported, errors=tuple(_messages(entry)))
    return result


def plans_status(status_details: Any) -> CustomerImportStatus | None:
    details = status_details if isinstance(status_details, dict) else {}
    entry = details.get("plans")
    if not isinstance(entry, dict):
        return None
    status = str(entry.get("status", "")).lower()
    return CustomerImportStatus(imported=status in IMPORTED, errors=tuple(_messages(entry)))


def _messages(value: Any, path: str = "") -> list[str]:
    if isinstance(value, str):
        return [f"{path}: {value}" if path else value]
    if isinstance(value, list):
        return [m for item in value for m in _messages(item, path)]
    if isinstance(value, dict):
        messages: list[str] = []
        for key, item in value.items():
            if key == "status":
                continue
            if key in ("errors", "error", "message"):
                messages += _messages(item, path)
            elif isinstance(item, dict | list):
                messages += _messages(item, f"{path}.{key}" if path else key)
        return messages
    return []


# ---------------------------------------------------------------- carrying it out


# An Exception other than these two is a failure of that one record (its handler raises it again: SQS retries).
BundleOutcome = ApplyResult | BundleRefused | ChartMogulError | Exception


def _set_once_returned(done: threading.Event, work: Callable[[], list[BundleOutcome]]) -> list[BundleOutcome]:
    """Run `work`, then set `done` however it ended, so no chunk waiting on it waits past a crash."""
    try:
        return work()
    finally:
        done.set()


def _record_failure(bundle: CustomerBundle, error: Exception) -> Exception:
    logger.warning(
        "bulk apply failed for one customer",
        extra={"customer_external_id": bundle.customer.external_id, "error": f"{type(error).__name__}: {error}"},
    )
    return error


class BulkUploader:
    def __init__(
        self,
        api: ChartMogulApi,
        uploader: BundleUploader,
        sleep: Callable[[float], None] = time.sleep,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self._api = api
        self._uploader = uploader
        self._idmap = uploader.idmap
        self._sleep = sleep
        self._max_payload_bytes = max_payload_bytes
        # Per-customer API calls run on up to this instance's share of ChartMogul's connections.
        self._workers = api.limiter.max_workers
        self.imports_made: list[str] = []  # ChartMogul import ids, for logs and reports

    def apply_many(self, bundles: Sequence[CustomerBundle], budget: TimeBudget) -> list[BundleOutcome]:
        """Apply every bundle; one outcome per bundle, in order. Never raises for a single bundle's failure.

        Customer heads go first, each under its own lease for its one request (`BundleUploader.apply_head`):
        held for the whole batch, as the other bundles' are, the leases of hundreds of heads would make a full
        bundle of one of those customers, arriving at another instance meanwhile, wait and fail. Every other
        bundle of the batch is applied only while its customer's lease is held (leases.py): a customer another
        upload is applying right now is waited for (bounded), then fails transiently and is redelivered. The
        staleness checks happen after the leases are taken.
        """
        outcomes: dict[int, BundleOutcome] = {}
        with_history = {b.customer.external_id for b in bundles if not b.customer_only}
        heads: dict[str, int] = {}
        for index, bundle in enumerate(bundles):
            customer_id = bundle.customer.external_id
            if not bundle.customer_only:
                continue
            if customer_id in with_history:
                outcomes[index] = ApplyResult(customer_id, Outcome.UNCHANGED, notes=[_HEAD_BESIDE_ITS_BUNDLE])
            elif not _has_attributes(bundle):
                # The import creates such a customer itself, in the same request as its history: created alone
                # now, it would cost a request the bulk format saves.
                outcomes[index] = ApplyResult(customer_id, Outcome.UNCHANGED, notes=[_HEAD_LEFT_TO_THE_IMPORT])
            elif customer_id in heads:
                outcomes[index] = ApplyResult(customer_id, Outcome.UNCHANGED, notes=[_HEAD_REPEATED])
            else:
                heads[customer_id] = index
        created = map_concurrently(lambda i: self._head(bundles[i], budget), list(heads.values()), self._workers)
        outcomes.update(zip(heads.values(), created, strict=True))

        rest = [i for i in range(len(bundles)) if i not in outcomes]
        if not rest:
            return [outcomes[i] for i in range(len(bundles))]
        with self._uploader.leases.hold_many([bundles[i].customer.external_id for i in rest], budget) as held:
            for index in rest:
                if bundles[index].customer.external_id not in held:
                    outcomes[index] = LeaseUnavailable(bundles[index].customer.external_id, 0.0)
            self._apply_held(bundles, [i for i in rest if i not in outcomes], budget, outcomes)
        return [outcomes[i] for i in range(len(bundles))]

    def _head(self, bundle: CustomerBundle, budget: TimeBudget) -> BundleOutcome:
        try:
            return self._uploader.apply_head(bundle, budget)
        except Exception as error:  # only this record fails
            return _record_failure(bundle, error)

    def _apply_held(
        self, bundles: Sequence[CustomerBundle], indexes: list[int], budget: TimeBudget, outcomes: dict[int, Any]
    ) -> None:
        """Apply the bundles (no heads among them) whose customers' leases are held."""
        newest: dict[str, int] = {}
        for index in indexes:
            customer_id = bundles[index].customer.external_id
            if customer_id not in newest or bundles[index].snapshot_time > bundles[newest[customer_id]].snapshot_time:
                newest[customer_id] = index
        to_import: list[int] = []
        via_api: list[int] = []
        # Customers created alone (a head's work): their history goes in the import, their customer record not.
        created_alone: dict[str, KnownCustomer] = {}
        # The leases are held: the customers' entries are read in one batch, then answered from memory (idmap.py).
        with self._idmap.read_ahead(list(newest)):
            for customer_id, index in newest.items():
                bundle = bundles[index]
                try:
                    skipped = self._uploader.skip_reason(bundle)
                    known = self._idmap.known_customer(customer_id)
                    if skipped is not None:
                        outcomes[index] = skipped
                    elif not bundle.deleted_in_source and (
                        not known.exists or (known.created_alone and _has_history(bundle))
                    ):
                        to_import.append(index)
                        if known.exists:
                            created_alone[customer_id] = known
                    else:
                        via_api.append(index)
                except Exception as error:  # only this record fails (e.g. its id map entry could not be read)
                    outcomes[index] = _record_failure(bundle, error)
            # One bundle per customer here, each under its customer's lease: they run side by side (limiter.py).
            applied = map_concurrently(lambda i: self._via_api(bundles[i], budget), via_api, self._workers)
            outcomes.update(zip(via_api, applied, strict=True))
            if to_import:
                self._import(bundles, to_import, budget, outcomes, created_alone)
            # Older bundles of a customer in the same batch: after the newest is applied they are stale.
            for index in indexes:
                if index not in outcomes:
                    outcomes[index] = self._via_api(bundles[index], budget)

    def _via_api(self, bundle: CustomerBundle, budget: TimeBudget) -> BundleOutcome:
        try:
            return self._uploader.apply_held(bundle, budget)
        except (BundleRefused, ChartMogulError) as failure:
            return failure
        except Exception as error:  # only this record fails
            return _record_failure(bundle, error)

    def _import(
        self,
        bundles: Sequence[CustomerBundle],
        indexes: list[int],
        budget: TimeBudget,
        outcomes: dict[int, Any],
        created_alone: dict[str, KnownCustomer],
    ) -> None:
        """Import the customers ChartMogul does not hold yet, in chunks whose requests overlap ChartMogul's work.

        A chunk's customers that need their uuid after the import are created first (`needs_uuid_after_import`),
        then the chunk is sent as one import (or more, if over the size limit). While ChartMogul processes it, the
        next chunk's customers are created: the instance keeps sending requests instead of waiting, and the
        import's own wait (polling, then the API pass of its customers) runs beside. Chunks hold at least
        MIN_CUSTOMERS_PER_IMPORT customers, ChartMogul's recommended minimum (docs/sources.md#cm-bulk-import).
        The customers in `created_alone` exist already (a head created them): they are not created again.
        """
        index_of = {bundles[i].customer.external_id: i for i in indexes}
        prefix = "cmsync-" + hashlib.sha256(" ".join(sorted(index_of)).encode()).hexdigest()[:12]
        prefix += "-" + uuid.uuid4().hex[:8]  # a retried batch is a new import, never a clash of import ids
        # Each import in flight, with the event set once ChartMogul has finished it (its customers' API pass apart).
        in_flight: list[tuple[BulkPayload, Future[list[BundleOutcome]], threading.Event]] = []
        with ThreadPoolExecutor(max_workers=MAX_CHUNKS, thread_name_prefix="bulk-import") as imports:
            for number, chunk in enumerate(import_chunks(indexes), start=1):
                created = self._create_chunk(bundles, chunk, budget, outcomes, created_alone)
                to_import = [i for i in chunk if i not in outcomes]
                needed = {p.external_id for i in to_import for p in bundles[i].plans}
                # A plan an unfinished import is creating is sent once: the chunks that need it wait for that import
                # to finish, not for the API pass of its customers after it (the plan exists by then).
                for sent, _future, finished in in_flight:
                    if needed & sent.plans.keys():
                        finished.wait(timeout=max(0.0, budget.remaining()))
                known_plans = self._idmap.known_plans(needed)
                payloads, too_big = pack_payloads(
                    [bundles[i] for i in to_import],
                    known_plans,
                    f"{prefix}-{number}",
                    max_bytes=self._max_payload_bytes,
                    created=created,
                )
                for bundle in too_big:
                    logger.info("customer too large for one bulk import: applied per object", extra=_ids(bundle))
                    outcomes[index_of[bundle.customer.external_id]] = self._via_api(bundle, budget)
                for payload in payloads:
                    submitted = self._submit_import(payload, budget)
                    finished = threading.Event()
                    run = functools.partial(self._run_import, payload, submitted, created, budget, finished)
                    future = imports.submit(_set_once_returned, finished, run)
                    in_flight.append((payload, future, finished))
            for payload, future, _finished in in_flight:
                for bundle, outcome in zip(payload.bundles, future.result(), strict=True):
                    outcomes[index_of[bundle.customer.external_id]] = outcome

    def _create_chunk(
        self,
        bundles: Sequence[CustomerBundle],
        chunk: list[int],
        budget: TimeBudget,
        outcomes: dict[int, Any],
        created_alone: dict[str, KnownCustomer],
    ) -> dict[str, KnownCustomer]:
        """Create, side by side, the chunk's customers whose API pass after the import needs their uuid: one
        request each instead of a lookup and an update after the import. Those done here get their outcome.
        Those created alone already (`created_alone`) are only counted among the created."""
        ids = {i: bundles[i].customer.external_id for i in chunk}
        created = {ids[i]: created_alone[ids[i]] for i in chunk if ids[i] in created_alone}
        first = [i for i in chunk if needs_uuid_after_import(bundles[i]) and ids[i] not in created]
        made_all = map_concurrently(lambda i: self._create_first(bundles[i], budget), first, self._workers)
        for index, made in zip(first, made_all, strict=True):
            bundle = bundles[index]
            if isinstance(made, KnownCustomer):
                created[bundle.customer.external_id] = made
                if not bundle.invoices and not bundle.subscription_events:  # nothing to import: the API pass is all
                    outcomes[index] = self._via_api(bundle, budget)
            elif made is None:  # ChartMogul had it already: the whole bundle goes through the API
                outcomes[index] = self._via_api(bundle, budget)
            else:
                outcomes[index] = made
        return created

    def _create_first(self, bundle: CustomerBundle, budget: TimeBudget) -> KnownCustomer | BundleOutcome | None:
        try:
            return self._uploader.create_customer_first(bundle, budget)
        except (BundleRefused, ChartMogulError) as failure:
            return failure
        except Overtaken as overtaken:  # cannot happen while the lease holds; kept as the id map's guard
            return ApplyResult(bundle.customer.external_id, Outcome.STALE, notes=[str(overtaken)])
        except Exception as error:  # only this record fails
            return _record_failure(bundle, error)

    def _submit_import(self, payload: BulkPayload, budget: TimeBudget) -> Any | ChartMogulError:
        """POST the import; what ChartMogul answered (the queued import), or the error that refused it."""
        customer_ids = [b.customer.external_id for b in payload.bundles]
        ds = self._idmap.data_source_uuid
        try:
            queued = self._api.call(
                f"bulk import {payload.external_id} ({len(customer_ids)} customers)",
                lambda cfg: chartmogul.JsonImport.create(cfg, data_source_uuid=ds, data=payload.body()).get(),
                budget,
            )
        except ChartMogulError as error:
            return error
        self.imports_made.append(str(queued.id))
        return queued

    def _run_import(
        self,
        payload: BulkPayload,
        submitted: Any | ChartMogulError,
        created: dict[str, KnownCustomer],
        budget: TimeBudget,
        done: threading.Event,
    ) -> list[BundleOutcome]:
        """Wait for a submitted import, then each of its customers' outcome (and API pass), in payload order. `done`
        is set once ChartMogul has finished the import and its plans are remembered."""
        customer_ids = [b.customer.external_id for b in payload.bundles]
        try:
            if isinstance(submitted, ChartMogulError):
                raise submitted
            import_id = str(submitted.id)
            finished = self._poll(payload.external_id, submitted, budget)
        except ChartMogulError as error:
            if error.kind is FailureKind.PERMANENT:  # the whole document was refused (too large, malformed)
                return [BundleRefused(c, error, payload.external_id) for c in customer_ids]
            return [error] * len(customer_ids)
        if finished is None:
            timeout = ChartMogulError(
                f"bulk import {import_id}",
                FailureKind.TRANSIENT,
                retry_now=False,
                detail="still processing when the time budget ran out; the records will be redelivered",
            )
            return [timeout] * len(customer_ids)
        logger.info("bulk import finished", extra={"import_id": import_id, "status": finished.status})
        details = getattr(finished, "status_details", None)
        plans = plans_status(details)
        if payload.plans and plans is not None and plans.imported:
            for plan in payload.plans.values():
                self._idmap.remember_plan(plan.external_id, KnownPlan(uuid=None, fields=plan_fields(plan)))
        done.set()  # the chunks waiting for its plans go on while its customers' API pass runs
        statuses = customer_statuses(details, customer_ids)
        # The API pass of each imported customer (one bundle per customer, its lease held) runs side by side.
        return map_concurrently(
            lambda b: self._customer_outcome(
                b, statuses[b.customer.external_id], plans, import_id, created.get(b.customer.external_id), budget
            ),
            payload.bundles,
            self._workers,
        )

    def _customer_outcome(
        self,
        bundle: CustomerBundle,
        status: CustomerImportStatus | None,
        plans: CustomerImportStatus | None,
        import_id: str,
        created: KnownCustomer | None,
        budget: TimeBudget,
    ) -> BundleOutcome:
        customer_id = bundle.customer.external_id
        if status is not None and status.imported:
            try:
                with self._idmap.writing(customer_id, snapshot_version(bundle)):
                    self._idmap.remember_customer(customer_id, _known_after_import(bundle, created))
            except Overtaken as overtaken:  # cannot happen while the lease holds; kept as the id map's guard
                return ApplyResult(customer_id, Outcome.STALE, notes=[str(overtaken)])
            except Exception as failure:  # only this record fails
                return _record_failure(bundle, failure)
            result = self._via_api(bundle, budget)  # cancellations and attributes; no request when there are none
            if isinstance(result, ApplyResult):
                result.outcome = Outcome.APPLIED  # the import wrote it, whatever the API pass had left to do
                result.writes["customers_bulk_imported"] += 1
                result.writes["invoices_bulk_imported"] += len(bundle.invoices)
            return result
        if status is not None and status.only_duplicates:
            return self._via_api(bundle, budget)
        if status is None:
            return ChartMogulError(
                f"bulk import {import_id}",
                FailureKind.TRANSIENT,
                retry_now=False,
                detail=f"the finished import reports no status for customer {customer_id}",
            )
        errors = list(status.errors)
        if plans is not None and not plans.imported and not plans.only_duplicates:
            errors += [f"plans: {m}" for m in plans.errors]
        body = json.dumps({"import_id": import_id, "customer_external_id": customer_id, "errors": errors})
        error = ChartMogulError(
            f"bulk import {import_id}",
            FailureKind.PERMANENT,
            body=body,
            detail="; ".join(errors[:5]) or "failed without a reason",
        )
        return BundleRefused(customer_id, error, customer_id)

    def _poll(self, external_id: str, created: Any, budget: TimeBudget) -> Any | None:
        """The import once finished, or None when the budget ran out first (bounded: MAX_POLLS looks).

        Polled by the import's `external_id` (ours): the status endpoint's path parameter is defined as the
        identifier the caller specified (https://dev.chartmogul.com/reference/bulk-import/track-status; the
        Node SDK's test polls with it, chartmogul/chartmogul-node test/chartmogul/json-import.js).
        """
        current, delay = created, FIRST_POLL_DELAY_S
        ds = self._idmap.data_source_uuid
        for _look in range(MAX_POLLS):
            if str(getattr(current, "status", "")).lower() in FINISHED:
                return current
            if budget.remaining() < delay + 5.0:
                return None
            self._sleep(delay)
            delay = min(MAX_POLL_DELAY_S, delay * 1.5)
            current = self._api.call(
                f"poll bulk import {external_id}",
                lambda cfg: chartmogul.JsonImport.retrieve(cfg, data_source_uuid=ds, id=external_id).get(),
                budget,
                counted=False,  # waiting for ChartMogul: this instance's share of the rate goes to the busy ones
            )
        return None


_HEAD_BESIDE_ITS_BUNDLE = "customer head: its customer's full bundle is in the same batch"
_HEAD_LEFT_TO_THE_IMPORT = "customer head: no tags or custom attributes, so the bulk import creates the customer"
_HEAD_REPEATED = "customer head: another head of this customer is earlier in the same batch"


def _has_attributes(bundle: CustomerBundle) -> bool:
    """Whether the customer has what the bulk format cannot carry (tags, custom attributes)."""
    return bool(bundle.customer.attributes.tags or bundle.customer.attributes.custom)


def _has_history(bundle: CustomerBundle) -> bool:
    """Whether the bundle has records a bulk import can carry (the customer record apart)."""
    return bool(bundle.invoices or bundle.subscription_events)


def import_chunks(indexes: Sequence[int]) -> list[list[int]]:
    """Split a batch's customers into chunks of nearly equal size (pure): as many as fit MIN_CUSTOMERS_PER_IMPORT
    each, at most MAX_CHUNKS; a batch under twice the minimum is one chunk.

        >>> [len(c) for c in import_chunks(range(250))]
        [125, 125]
    """
    chunks = max(1, min(MAX_CHUNKS, len(indexes) // MIN_CUSTOMERS_PER_IMPORT))
    size = math.ceil(len(indexes) / chunks) if indexes else 0
    return [list(indexes[start : start + size]) for start in range(0, len(indexes), size)] if size else []


def needs_uuid_after_import(bundle: CustomerBundle) -> bool:
    """Whether the API pass after a bulk import would need the customer's ChartMogul uuid (pure).

    It would to set tags or custom attributes (the bulk format carries none, docs/sources.md#cm-bulk-import) and to
    cancel subscriptions (`PATCH /import/subscriptions/{uuid}`, found through the customer's uuid).
    """
    return _has_attributes(bundle) or bool(bundle.cancellations)


def _known_after_import(bundle: CustomerBundle, created: KnownCustomer | None = None) -> KnownCustomer:
    """What ChartMogul holds for this customer after a completed import (`created`: what creating it first made)."""
    if created is not None:
        uuid, fields = created.uuid, created.fields
    else:
        uuid, fields = None, customer_fields(bundle.customer)  # its uuid is looked up later, when needed
        # The bulk format carries no attributes (docs/sources.md#cm-bulk-import): what ChartMogul holds is the
        # empty default, which the API pass then patches when the bundle has tags or custom attributes.
        fields["attributes"] = customer_fields(Customer(external_id=bundle.customer.external_id))["attributes"]
    return KnownCustomer(
        exists=True,
        uuid=uuid,
        fields=fields,
        invoices=dict.fromkeys(i.external_id for i in bundle.invoices),
        transactions=frozenset(t.external_id for i in bundle.invoices for t in i.transactions),
        events=frozenset(e.external_id for e in bundle.subscription_events),
    )


def _ids(bundle: CustomerBundle) -> dict[str, str]:
    return {"customer_external_id": bundle.customer.external_id}
