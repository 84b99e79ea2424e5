"""The id map: what ChartMogul holds for our data source (external id → uuid), cached in DynamoDB.

The Import API has no idempotency key; an object's external id is the only de-duplication, and a second create
answers 422 rather than the object (docs/sources.md#cm-idempotency). So the uploader remembers every
object it created; when the memory is missing (a crash between the write and the remembering, a bulk import, a
wiped table) ChartMogul is asked by external id (the `lookup_*` / `refresh_customer` fallbacks below).

Storage (StateTable, layout in state.py): one item per customer holding everything known about its objects, so a
bundle costs one read and a few writes; one item per plan (plans are shared by customers); one per data source
name; and the applied-bundle version per customer.
"""

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import chartmogul
from aws_lambda_powertools import Logger
from pydantic import TypeAdapter

from chartmogul_sync.state import StateTable, key

from .apply import KnownCustomer, KnownPlan, KnownSubscription
from .client import ChartMogulApi, ChartMogulError, FailureKind, TimeBudget

logger = Logger(child=True)

_known_customer = TypeAdapter(KnownCustomer)
_known_plan = TypeAdapter(KnownPlan)
# DynamoDB items are limited to 400 KB. Past this size a customer's invoices and transactions go to part items of
# at most about _PART_BYTES each (a 20,000-invoice customer needs ~2 MB: 16 parts).
_MAX_CUSTOMER_ITEM_BYTES = 300_000
_PART_BYTES = 200_000
# Bounds on listing loops (docs/sources.md#cm-pagination: 200 per page): 1,000 pages = 200,000 invoices for one
# customer.
_MAX_PAGES = 1_000
_PER_PAGE = 200


_NOT_HELD: Any = object()


class Overtaken(Exception):
    """A newer bundle of this customer was recorded while this one was being applied: this one must stop."""

    def __init__(self, customer_external_id: str, version: str) -> None:
        super().__init__(f"customer {customer_external_id}: a bundle newer than {version} was applied meanwhile")


@dataclass(frozen=True)
class IdPart:
    """One part of a large customer's id map entry."""

    invoices: dict[str, str | None]
    transactions: tuple[str, ...]  # sorted, so that equal parts serialize alike


_id_part = TypeAdapter(IdPart)


def _part_count(document_bytes: int) -> int:
    # A power of two, so that the split changes rarely as a customer grows.
    count = 2
    while document_bytes / count > _PART_BYTES:
        count *= 2
    return count


def _split(known: KnownCustomer, count: int) -> list[IdPart]:
    invoices: list[dict[str, str | None]] = [{} for _ in range(count)]
    transactions: list[set[str]] = [set() for _ in range(count)]
    for external_id, uuid in known.invoices.items():
        invoices[_bucket(external_id, count)][external_id] = uuid
    for external_id in known.transactions:
        transactions[_bucket(external_id, count)].add(external_id)
    return [IdPart(dict(sorted(invoices[i].items())), tuple(sorted(transactions[i]))) for i in range(count)]


def _bucket(external_id: str, count: int) -> int:
    return zlib.crc32(external_id.encode()) % count


def _part_key(customer_external_id: str, count: int, index: int) -> str:
    return key("customer", customer_external_id, "part", str(count), str(index))


def _part_prefix(customer_external_id: str, count: int) -> str:
    return key("customer", customer_external_id, "part", str(count), "")


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


class IdMap:
    def __init__(self, state: StateTable, api: ChartMogulApi, data_source_uuid: str) -> None:
        self._state = state
        self._api = api
        self.data_source_uuid = data_source_uuid
        self._pk = key("idmap", data_source_uuid)
        self._plans: dict[str, KnownPlan] = {}  # plans change rarely and are shared: cached for the process
        self._versions: dict[str, str] = {}  # customer → the bundle version being applied (see `writing`)
        # customer → (part count, digest of each part as last read or written): only changed parts are rewritten.
        self._parts: dict[str, tuple[int, dict[int, str]]] = {}
        # (pk, sk) → the item as stored (None: none), for the customers of a `read_ahead` block: read ahead in one
        # batch, then kept up to date by this upload's own writes.
        self._held: dict[tuple[str, str], dict[str, Any] | None] = {}

    # ------------------------------------------------------------ customers

    @contextmanager
    def writing(self, customer_external_id: str, version: str) -> Iterator[None]:
        """Within the block, writes of this customer's entry are conditional on `version` (a bundle's snapshot
        version): one that finds a newer version stored raises Overtaken instead of writing."""
        self._versions[customer_external_id] = version
        try:
            yield
        finally:
            self._versions.pop(customer_external_id, None)

    @contextmanager
    def read_ahead(self, customer_external_ids: Iterable[str]) -> Iterator[None]:
        """Within the block, these customers' entries (`known_customer`, `last_applied`) are read once, in one
        batched read (BatchGetItem, 100 items a request), and answered from memory from then on, as this
        upload's own writes leave them.

        Only for customers whose leases the caller holds (leases.py): nobody else writes their entries meanwhile,
        so what this upload read or wrote last is what DynamoDB holds. A write that fails, or finds a newer
        version stored, drops the entry from memory: the next read asks DynamoDB. A batch of 500 customers costs
        10 reads instead of 1,000 before its first ChartMogul request, and none after.
        """
        keys = [
            item_key
            for customer_id in customer_external_ids
            for item_key in (self._customer_key(customer_id), self._applied_key(customer_id))
        ]
        try:
            found = self._state.get_many(keys)
        except Exception as error:  # the reads go one by one instead: a failed batched read fails no record
            logger.warning(
                "could not read the id map entries ahead", extra={"error": f"{type(error).__name__}: {error}"}
            )
            yield
            return
        self._held.update({item_key: found.get(item_key) for item_key in keys})
        try:
            yield
        finally:
            for item_key in keys:
                self._held.pop(item_key, None)

    def _read(self, item_key: tuple[str, str]) -> dict[str, Any] | None:
        held = self._held.get(item_key, _NOT_HELD)
        return self._state.get(*item_key) if held is _NOT_HELD else held

    def _write_held(self, item_key: tuple[str, str], attributes: dict[str, Any], write: Callable[[], bool]) -> bool:
        """Run `write` (of `attributes` at `item_key`; False: its condition did not hold): a held entry becomes what
        was written, or is dropped when nothing was (the next read asks DynamoDB)."""
        try:
            written = write()
        except BaseException:
            self._held.pop(item_key, None)
            raise
        if not written:
            self._held.pop(item_key, None)
        elif item_key in self._held:
            self._held[item_key] = {**attributes, "pk": item_key[0], "sk": item_key[1]}
        return written

    def _customer_key(self, customer_external_id: str) -> tuple[str, str]:
        return self._pk, key("customer", customer_external_id)

    def _applied_key(self, customer_external_id: str) -> tuple[str, str]:
        return key("applied", self.data_source_uuid), customer_external_id

    def known_customer(self, customer_external_id: str) -> KnownCustomer:
        head = self._read(self._customer_key(customer_external_id))
        if head is None:
            self._parts.pop(customer_external_id, None)
            return KnownCustomer()
        known = _known_customer.validate_json(head["known"])
        count = int(head.get("parts", 0))
        if not count:
            self._parts[customer_external_id] = (0, {})
            return known
        # A large customer: its invoices and transactions live in `count` part items (see remember_customer).
        invoices: dict[str, str | None] = dict(known.invoices)
        transactions = set(known.transactions)
        digests: dict[int, str] = {}
        for item in self._state.query(self._pk, _part_prefix(customer_external_id, count)):
            part = _id_part.validate_json(item["part"])
            invoices.update(part.invoices)
            transactions.update(part.transactions)
            digests[int(str(item["sk"]).rsplit("#", 1)[1])] = _digest(str(item["part"]))
        self._parts[customer_external_id] = (count, digests)
        return replace(known, invoices=invoices, transactions=frozenset(transactions))

    def remember_customer(self, customer_external_id: str, known: KnownCustomer) -> None:
        """Store what ChartMogul confirmed for a customer (callers remember only after ChartMogul answered).

        A customer whose entry would not fit one DynamoDB item (400 KB) keeps its invoices and transactions in
        part items, split by a hash of the external id so that a change rewrites only the parts it touches:
        written first, the head (which says how many parts there are) last, so a crash in between leaves parts
        that hold only what ChartMogul confirmed.
        """
        document = _known_customer.dump_json(known)
        previous_count, previous_digests = self._parts.get(customer_external_id, (0, {}))
        count = 0
        head = known
        digests: dict[int, str] = {}
        if len(document) > _MAX_CUSTOMER_ITEM_BYTES:
            count = _part_count(len(document))
            head = replace(known, invoices={}, transactions=frozenset())
            for index, part in enumerate(_split(known, count)):
                body = _id_part.dump_json(part).decode()
                digests[index] = _digest(body)
                if count == previous_count and previous_digests.get(index) == digests[index]:
                    continue  # unchanged since it was read or written
                self._state.put(self._pk, _part_key(customer_external_id, count, index), {"part": body})
            document = _known_customer.dump_json(head)
        attributes: dict[str, Any] = {"known": document.decode(), "parts": count}
        version = self._versions.get(customer_external_id)
        head_key = key("customer", customer_external_id)
        if version is not None:
            attributes["applied_version"] = version

        def write() -> bool:
            if version is None:
                self._state.put(self._pk, head_key, attributes)
                return True
            return self._state.put_if(
                self._pk,
                head_key,
                attributes,
                "attribute_not_exists(applied_version) OR applied_version <= :v",
                {":v": version},
            )

        if not self._write_held(self._customer_key(customer_external_id), attributes, write):
            raise Overtaken(customer_external_id, version or "")
        self._parts[customer_external_id] = (count, digests)
        if previous_count and previous_count != count:
            self._delete_parts(customer_external_id, previous_count)

    def forget_customer(self, customer_external_id: str) -> None:
        """Drop everything known of a customer: its head item and every part item, whatever their count."""
        self._parts.pop(customer_external_id, None)
        self._held.pop(self._customer_key(customer_external_id), None)
        self._state.delete(self._pk, key("customer", customer_external_id))
        for item in list(self._state.query(self._pk, key("customer", customer_external_id, "part", ""))):
            self._state.delete(self._pk, str(item["sk"]))

    def _delete_parts(self, customer_external_id: str, count: int) -> None:
        for item in list(self._state.query(self._pk, _part_prefix(customer_external_id, count))):
            self._state.delete(self._pk, str(item["sk"]))

    def lookup_customer_uuid(self, customer_external_id: str, budget: TimeBudget) -> str | None:
        found = self.lookup_customer(customer_external_id, budget)
        return None if found is None else found[0]

    def lookup_customer(self, customer_external_id: str, budget: TimeBudget) -> tuple[str, bool] | None:
        """(uuid, merged) of the ChartMogul customer that answers to this external id in our data source.

        `merged` when the customer's own external id is another one: ours was merged into it
        (`POST /customers/merges`, https://dev.chartmogul.com/reference/merge-customers; a customer lists every
        external id it answers to in `external_ids`, chartmogul-python `chartmogul/api/customer.py`).
        """
        page = self._list_by_external_id("customer", chartmogul.Customer, customer_external_id, budget)
        for entry in page.entries:
            if getattr(entry, "external_id", customer_external_id) == customer_external_id:
                return str(entry.uuid), False
        for entry in page.entries:
            if customer_external_id in (getattr(entry, "external_ids", None) or []):
                return str(entry.uuid), True
        return None

    def refresh_customer(self, customer_external_id: str, budget: TimeBudget) -> KnownCustomer:
        """Rebuild what is known about a customer from ChartMogul itself (after a duplicate answer)."""
        before = self.known_customer(customer_external_id)
        # A uuid we hold was good for the request that just answered (a 404 makes the caller forget it instead).
        found = (before.uuid, before.merged) if before.uuid else self.lookup_customer(customer_external_id, budget)
        if found is None:
            known = KnownCustomer()
        else:
            uuid, merged = found
            invoices = list(self._customer_invoices(uuid, customer_external_id, budget))
            known = with_invoices(
                KnownCustomer(
                    exists=True,
                    uuid=uuid,
                    merged=merged,
                    # Fields we wrote stay known unless the uuid changed (the customer was recreated or merged).
                    fields=before.fields if before.uuid in (None, uuid) else None,
                    subscriptions={
                        ext: KnownSubscription(uuid=None, cancellation_dates=sub.cancellation_dates)
                        for ext, sub in before.subscriptions.items()
                    },
                    events=before.events,
                ),
                invoices,
            )
        self.remember_customer(customer_external_id, known)
        return known

    def _customer_invoices(self, customer_uuid: str, customer_external_id: str, budget: TimeBudget) -> Iterator[Any]:
        cursor: str | None = None
        for _page in range(_MAX_PAGES):
            paging = {"cursor": cursor} if cursor else {}

            def list_page(cfg: chartmogul.Config, paging: dict[str, str] = paging) -> Any:
                return chartmogul.Invoice.all(cfg, uuid=customer_uuid, per_page=_PER_PAGE, **paging).get()

            page = self._api.call(f"list invoices of customer {customer_external_id}", list_page, budget)
            # A merged customer also holds other data sources' invoices: only ours are ours to diff.
            yield from (
                i for i in page.invoices if getattr(i, "data_source_uuid", None) in (None, self.data_source_uuid)
            )
            if not page.has_more or not page.cursor:
                return
            cursor = page.cursor
        raise ChartMogulError(
            f"list invoices of customer {customer_external_id}",
            FailureKind.PERMANENT,
            detail=f"more than {_MAX_PAGES * _PER_PAGE} invoices; refusing to page further",
        )

    def lookup_invoice(self, invoice_external_id: str, budget: TimeBudget) -> Any | None:
        page = self._list_by_external_id("invoice", chartmogul.Invoice, invoice_external_id, budget)
        matches = [i for i in page.invoices if getattr(i, "external_id", None) == invoice_external_id]
        return matches[0] if matches else None

    def lookup_event_id(self, event_external_id: str, budget: TimeBudget) -> int | None:
        page = self._list_by_external_id("subscription event", chartmogul.SubscriptionEvent, event_external_id, budget)
        for event in page.subscription_events:
            if getattr(event, "external_id", None) == event_external_id:
                return int(event.id)
        return None

    # ------------------------------------------------------------ plans

    def known_plans(self, external_ids: Iterable[str]) -> dict[str, KnownPlan]:
        known: dict[str, KnownPlan] = {}
        for external_id in external_ids:
            plan = self._plans.get(external_id)
            if plan is None:
                item = self._state.get(self._pk, key("plan", external_id))
                if item is None:
                    continue
                plan = _known_plan.validate_json(item["known"])
                self._plans[external_id] = plan
            known[external_id] = plan
        return known

    def remember_plan(self, external_id: str, plan: KnownPlan) -> None:
        self._state.put(self._pk, key("plan", external_id), {"known": _known_plan.dump_json(plan).decode()})
        self._plans[external_id] = plan

    def forget_plan(self, external_id: str) -> None:
        self._state.delete(self._pk, key("plan", external_id))
        self._plans.pop(external_id, None)

    def lookup_plan(self, external_id: str, budget: TimeBudget) -> KnownPlan | None:
        page = self._list_by_external_id("plan", chartmogul.Plan, external_id, budget)
        for plan in page.plans:
            if getattr(plan, "external_id", None) == external_id:
                fields = {"name": plan.name, "interval_count": plan.interval_count, "interval_unit": plan.interval_unit}
                return KnownPlan(uuid=str(plan.uuid), fields=fields)
        return None

    # ------------------------------------------------------------ applied bundle versions

    def last_applied(self, customer_external_id: str) -> tuple[str, str] | None:
        """(snapshot time, bundle digest) of the last bundle applied for this customer."""
        item = self._read(self._applied_key(customer_external_id))
        return None if item is None else (str(item["snapshot_time"]), str(item.get("bundle_digest", "")))

    def record_applied(self, customer_external_id: str, snapshot_time: str, digest: str) -> bool:
        """Record a bundle as applied unless a newer one already is; False when it was stale by then."""
        pk, sk = applied_key = self._applied_key(customer_external_id)
        applied = {"snapshot_time": snapshot_time, "bundle_digest": digest}

        def newer() -> bool:
            return self._state.put_if_newer(pk, sk, "snapshot_time", snapshot_time, {"bundle_digest": digest})

        if self._write_held(applied_key, applied, newer):
            return True
        current = self.last_applied(customer_external_id)  # not written: from DynamoDB
        if current is not None and current[0] == snapshot_time:
            # The same snapshot mapped differently (a new mapping version): its content is now the applied one.

            def overwrite() -> bool:
                self._state.put(pk, sk, applied)
                return True

            return self._write_held(applied_key, applied, overwrite)
        return False

    # ------------------------------------------------------------ helpers

    def _list_by_external_id(self, what: str, resource: Any, external_id: str, budget: TimeBudget) -> Any:
        """The answer of `resource.all` filtered to this data source and this external id (a `lookup_*` fallback).

        The caller still checks each entry's external id before trusting it as the match.
        """
        return self._api.call(
            f"look up {what} {external_id}",
            lambda cfg: resource.all(cfg, data_source_uuid=self.data_source_uuid, external_id=external_id).get(),
            budget,
        )


def with_invoices(known: KnownCustomer, invoices: Iterable[Any]) -> KnownCustomer:
    """`known` plus the invoices ChartMogul returned (from an import or a listing), their transactions and the
    subscriptions their lines belong to."""
    invoice_uuids = dict(known.invoices)
    transactions = set(known.transactions)
    subscriptions = dict(known.subscriptions)
    for invoice in invoices:
        external_id = getattr(invoice, "external_id", None)
        if external_id:
            invoice_uuids[external_id] = getattr(invoice, "uuid", None)
        transactions.update(t.external_id for t in getattr(invoice, "transactions", None) or [] if t.external_id)
        for line in getattr(invoice, "line_items", None) or []:
            sub_external_id = getattr(line, "subscription_external_id", None)
            sub_uuid = getattr(line, "subscription_uuid", None)
            if sub_external_id and sub_uuid:
                before = subscriptions.get(sub_external_id)
                dates = before.cancellation_dates if before else None
                subscriptions[sub_external_id] = KnownSubscription(uuid=sub_uuid, cancellation_dates=dates)
    return replace(known, invoices=invoice_uuids, transactions=frozenset(transactions), subscriptions=subscriptions)


class DataSources:
    """Finds the data source by name, creating it once (docs/sources.md#cm-data-sources: names are unique per
    account)."""

    def __init__(self, state: StateTable, api: ChartMogulApi) -> None:
        self._state = state
        self._api = api
        self._cache: dict[str, str] = {}

    def ensure(self, name: str, budget: TimeBudget) -> str:
        if name in self._cache:
            return self._cache[name]
        item = self._state.get("datasource", name)
        uuid = str(item["uuid"]) if item else self._find(name, budget) or self._create(name, budget)
        if item is None:
            self._state.put("datasource", name, {"uuid": uuid})
        self._cache[name] = uuid
        return uuid

    def _find(self, name: str, budget: TimeBudget) -> str | None:
        found = self._api.call(
            f"find data source {name!r}", lambda cfg: chartmogul.DataSource.all(cfg, name=name).get(), budget
        )
        for source in found.data_sources:
            if source.name == name:
                return str(source.uuid)
        return None

    def _create(self, name: str, budget: TimeBudget) -> str:
        try:
            created = self._api.call(
                f"create data source {name!r}",
                lambda cfg: chartmogul.DataSource.create(cfg, data={"name": name}).get(),
                budget,
            )
            return str(created.uuid)
        except ChartMogulError as error:
            if error.kind is not FailureKind.ALREADY_EXISTS:
                raise
            # Another upload created it meanwhile ("Has already been taken", docs/sources.md#cm-data-sources).
            uuid = self._find(name, budget)
            if uuid is None:
                raise
            return uuid
