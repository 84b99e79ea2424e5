"""Backfill: list every object type globally, stage it in S3 partitioned by customer, assemble per partition.

No per-customer Stripe calls (docs/architecture.md "Export modes"): each type is listed once, 100 per page. The only
other requests fetch what a listed object left out (invoice and credit note lines, invoice payments or
subscription items past the embedded first page; a price deleted from the catalog) and what a deleted customer
left (the `customer.deleted` events still kept; a customer deleted earlier, or created after the customers were
listed, is retrieved).

Steps, in order, each checkpointed in DynamoDB (`backfill#<run_id>` / `checkpoint`):

1. products, prices: the catalog, staged whole (it is per account, not per customer);
2. customers, staged as listed, each page's customer heads (each customer object alone) sent to the raw queue as
   the page comes, so that ChartMogul's customers are created while the rest is listed (docs/architecture.md
   "Customer heads"); their count decides the number of partitions (`customers_per_partition`), so a partition
   holds about the same number of customers whatever the account's size;
3. customers again, from S3 into their partitions;
4. subscriptions, invoices, invoice items, charges, credit notes, refunds (with their charge expanded, which
   names the customer): staged into their customer's partition;
5. assembly: one partition at a time, read back (its chunks side by side, the next partition while this one is
   assembled), one snapshot per customer, sent to the raw queue.

Memory holds one staging buffer (`flush_bytes`), the catalog, and two partitions (the one being assembled, and the
next, read ahead). A run near its time limit writes its checkpoint and hands over to a continuation; a crashed run
resumes from the last checkpoint: pages already written to S3 are not listed again, at most the unflushed buffer's
pages are.

Staged data is complete or the run fails loudly. Every flush writes a manifest beside its chunks
(`backfill/<run_id>/<step>/manifest/chunk-<n>.json`: each chunk key and its object count) and the checkpoint counts
the manifests of each step (`staged_chunks`). Each invocation that resumes a run checks that every manifest and
every chunk it names is still in S3, and assembly checks a partition's chunks again as it reads them: a chunk
that disappeared (deleted by hand, an early lifecycle rule) raises `StagedDataMissing`, naming it, instead of a
run that "finishes" without its objects.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import stripe
from pydantic import BaseModel, ConfigDict

from ...config import STRIPE_API_VERSION
from ...models.snapshot import CustomerSnapshot, StripeJson
from ...sinks.chartmogul.limiter import ChartMogulLimiter as RequestLimiter
from ...state import key
from .client import Page, StripeList, is_permanent_for_object
from .incremental import EVENT_RETENTION_S, RETENTION_SAFETY_S, EventCursor, load_cursor, save_cursor
from .run import Continuation, Exporter, ExportOutcome, UploadMode
from .snapshots import (
    OWNED_LISTS,
    REFUNDS_WITH_OWNER,
    Catalog,
    CustomerRecords,
    RecentDeletions,
    add_subscriptions_of_deleted_customer,
    assemble_snapshot,
    complete,
    created_of,
    customer_of,
    fetch_customer_records,
    refund_with_owner,
)
from .windows import STRIPE_EPOCH, ListSpec, ListWindow, WindowedLists

CHECKPOINT_SK = "checkpoint"
# Staged chunks written or read at once (a flush writes one per partition; a partition is read from one per flush):
# below boto3's default connection pool of 10 per client (botocore's `max_pool_connections`), which the export's
# other S3 calls share.
CHUNK_LANES = 8
CATALOG_LISTS = (StripeList.PRODUCTS, StripeList.PRICES)
UNPARTITIONED = "all"


@dataclass(frozen=True)
class Step:
    name: str
    resource: StripeList | None  # the list this step reads from Stripe; None for S3-only steps


LIST_CUSTOMERS = Step("customers", StripeList.CUSTOMERS)
PARTITION_CUSTOMERS = Step("customers-partitioned", None)
ASSEMBLE = Step("assemble", None)
STEPS: tuple[Step, ...] = (
    *(Step(resource.value, resource) for resource in CATALOG_LISTS),
    LIST_CUSTOMERS,
    PARTITION_CUSTOMERS,
    *(Step(owned.resource.value, owned.resource) for owned in OWNED_LISTS),
    Step(REFUNDS_WITH_OWNER.resource.value, REFUNDS_WITH_OWNER.resource),
    ASSEMBLE,
)
# What assembly reads back from each partition, and as which kind of object.
PARTITIONED_STEPS: tuple[tuple[str, StripeList], ...] = (
    (PARTITION_CUSTOMERS.name, StripeList.CUSTOMERS),
    *((owned.resource.value, owned.resource) for owned in (*OWNED_LISTS, REFUNDS_WITH_OWNER)),
)


class BackfillRange(BaseModel):
    """Customers created in [created_from, created_to); each is exported whole, with all its history."""

    model_config = ConfigDict(frozen=True)

    created_from: date | None = None
    created_to: date | None = None

    @property
    def bounded(self) -> bool:
        return self.created_from is not None or self.created_to is not None

    def customer_filter(self) -> dict[str, Any]:
        bounds: dict[str, int] = {}
        if self.created_from is not None:
            bounds["gte"] = _epoch(self.created_from)
        if self.created_to is not None:
            bounds["lt"] = _epoch(self.created_to)
        return {"created": bounds} if bounds else {}

    def contains(self, created: int) -> bool:
        """Whether a customer created at `created` (Unix seconds) is in the range."""
        if self.created_from is not None and created < _epoch(self.created_from):
            return False
        return self.created_to is None or created < _epoch(self.created_to)

    def owned_filter(self) -> dict[str, Any]:
        # A customer's objects are created after it: objects older than the range belong to no customer in it.
        # No upper bound: a customer created in the range keeps getting invoices after it.
        return {"created": {"gte": _epoch(self.created_from)}} if self.created_from is not None else {}


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class ListProgress(BaseModel):
    """Where one list of a listing group stands."""

    windows: list[ListWindow] = [ListWindow()]  # what is left to read; a list not begun is one window, all of it
    chunk: int = 0  # its next S3 chunk number
    finished: bool = False


class Checkpoint(BaseModel):
    """Progress of one backfill run; written after every flush to S3 and every assembled partition."""

    run_id: str
    range: BackfillRange
    started_at: datetime  # also the snapshots' time: every snapshot of the run is at least this fresh
    # How the upload function imports the run's customers; every raw message of the run carries it. Bulk unless
    # the backfill asked otherwise (docs/architecture.md "Upload modes"); a checkpoint written before this field was
    # bulk.
    upload_mode: UploadMode = "bulk"
    sequence: int = 0  # write counter: two invocations of one run cannot both write the same one
    step: int = 0
    # Listing steps, read in groups (`_listing_group`): each list's windows still to read and next chunk, as of the
    # last staged page.
    lists: dict[str, ListProgress] = {}
    # A checkpoint written before groups existed has its step's one cursor here instead; later ones leave it empty.
    starting_after: str | None = None
    last_created: int | None = None
    created_lte: int | None = None
    # The oldest customer listed: where its objects' lists begin, for cutting them into windows.
    oldest_customer_created: int | None = None
    chunk: int = 0  # the next S3 chunk number within the step
    position: int = 0  # partition step: next source chunk; assembly: next partition
    partitions: int = 0
    customers_listed: int = 0
    objects_listed: int = 0
    pages_staged: int = 0
    customers_enqueued: int = 0
    customer_heads_sent: int = 0
    orphans_skipped: int = 0
    drafts_skipped: int = 0
    customers_set_aside: int = 0
    # Manifests written per step (step name → count); a checkpoint written before manifests existed has none.
    staged_chunks: dict[str, int] = {}
    finished: bool = False


class StagedDataMissing(RuntimeError):
    """A staged chunk (or its manifest) is gone from S3: the run cannot finish complete. Retrying cannot bring
    it back; a new backfill run (same range, new run id) stages everything again."""


class ConcurrentRunError(RuntimeError):
    """Another invocation of the same backfill run wrote a checkpoint first: this one stops."""


class BackfillNotFound(LookupError):
    pass


# -- checkpoint ------------------------------------------------------------------------------------------------


def _pk(run_id: str) -> str:
    return key("backfill", run_id)


def load_checkpoint(exporter: Exporter, run_id: str) -> Checkpoint | None:
    item = exporter.state.get(_pk(run_id), CHECKPOINT_SK)
    return Checkpoint.model_validate_json(item["checkpoint"]) if item else None


def _save(exporter: Exporter, checkpoint: Checkpoint) -> Checkpoint:
    saved = checkpoint.model_copy(update={"sequence": checkpoint.sequence + 1})
    written = exporter.state.put_if_newer(
        _pk(saved.run_id),
        CHECKPOINT_SK,
        "sequence_key",
        f"{saved.sequence:010d}",
        {"checkpoint": saved.model_dump_json()},
    )
    if not written:
        raise ConcurrentRunError(
            f"backfill {saved.run_id}: another invocation has moved past checkpoint {saved.sequence}"
        )
    return saved


# -- staging ---------------------------------------------------------------------------------------------------


def partition_of(customer_id: str, partitions: int) -> int:
    # crc32, not hash(): Python salts str hashes per process, and a continuation is another process.
    return zlib.crc32(customer_id.encode()) % partitions


def _partition_prefix(exporter: Exporter, step_name: str, partition: str) -> str:
    """Where a step's objects of one partition are staged, as numbered JSON-lines chunks."""
    return f"backfill/{exporter.run_id}/{step_name}/p={partition}/"


class Stager:
    """Buffers staged objects per partition and writes them as JSON-lines chunks to S3."""

    def __init__(self, exporter: Exporter, step: Step) -> None:
        self._exporter = exporter
        self._step_name = step.name
        self._buffers: dict[str, list[str]] = {}
        self.size_bytes = 0

    def add(self, partition: str, obj: StripeJson) -> None:
        line = json.dumps(obj, separators=(",", ":"), sort_keys=True)
        self._buffers.setdefault(partition, []).append(line)
        self.size_bytes += len(line)

    def flush(self, chunk: int) -> None:
        """Write the buffered chunks, then their manifest (what the checkpoint about to be written vouches for)."""
        chunks = {
            f"{_partition_prefix(self._exporter, self._step_name, partition)}chunk-{chunk:06d}.jsonl": lines
            for partition, lines in sorted(self._buffers.items())
        }
        # A chunk per partition, a hundred or more: their PUTs go side by side, as the GETs that read them back do.
        with ThreadPoolExecutor(max_workers=CHUNK_LANES, thread_name_prefix="staged-chunks") as pool:
            list(pool.map(self._put_chunk, chunks.items()))
        written = {chunk_key: len(lines) for chunk_key, lines in chunks.items()}
        self._exporter.s3.put_object(
            Bucket=self._exporter.settings.staging_bucket,
            Key=_manifest_key(self._exporter, self._step_name, chunk),
            Body=json.dumps({"step": self._step_name, "chunk": chunk, "objects": written}, sort_keys=True).encode(),
            ContentType="application/json",
        )
        self._buffers.clear()
        self.size_bytes = 0

    def _put_chunk(self, chunk: tuple[str, list[str]]) -> None:
        chunk_key, lines = chunk
        self._exporter.s3.put_object(
            Bucket=self._exporter.settings.staging_bucket, Key=chunk_key, Body="\n".join(lines).encode()
        )


def _manifest_key(exporter: Exporter, step_name: str, chunk: int) -> str:
    return f"backfill/{exporter.run_id}/{step_name}/manifest/chunk-{chunk:06d}.json"


class StagedManifests:
    """The chunks each step's manifests say were staged, read once per invocation and checked against S3."""

    def __init__(self, exporter: Exporter, checkpoint: Checkpoint) -> None:
        self._exporter = exporter
        self._counts = dict(checkpoint.staged_chunks)
        self._expected: dict[str, dict[str, int]] = {}

    def expected(self, step_name: str) -> dict[str, int]:
        """Chunk key → object count, over every manifest of the step."""
        if step_name not in self._expected:
            expected: dict[str, int] = {}
            bucket = self._exporter.settings.staging_bucket
            for chunk in range(self._counts.get(step_name, 0)):
                manifest_key = _manifest_key(self._exporter, step_name, chunk)
                try:
                    body = self._exporter.s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
                except Exception as error:
                    if _s3_code(error) not in ("NoSuchKey", "404"):
                        raise  # S3 failing to answer: the invocation fails and is retried
                    raise StagedDataMissing(
                        f"backfill {self._exporter.run_id}: the manifest s3://{bucket}/{manifest_key} of step "
                        f"{step_name} is gone, so its staged data cannot be vouched for; start a new backfill run "
                        "(same range, no run_id) to stage everything again"
                    ) from None
                expected.update(json.loads(body)["objects"])
            self._expected[step_name] = expected
        return self._expected[step_name]

    def check(self, step_name: str, present: Iterable[str], prefix: str = "") -> None:
        """Raise StagedDataMissing if a chunk a manifest names (under `prefix`) is not among `present`."""
        missing = sorted(set(k for k in self.expected(step_name) if k.startswith(prefix)) - set(present))
        if not missing:
            return
        bucket = self._exporter.settings.staging_bucket
        objects = sum(self.expected(step_name)[k] for k in missing)
        raise StagedDataMissing(
            f"backfill {self._exporter.run_id}: {len(missing)} staged chunk(s) of step {step_name} are gone from S3 "
            f"({objects} Stripe objects, first s3://{bucket}/{missing[0]}); the run stops rather than finish "
            "without them: start a new backfill run (same range, no run_id) to stage everything again"
        )

    def verify_all(self, steps: Iterable[str]) -> None:
        for step_name in steps:
            if self._counts.get(step_name):
                self.check(step_name, _chunk_keys(self._exporter, f"backfill/{self._exporter.run_id}/{step_name}/p="))


def _s3_code(error: BaseException) -> str | None:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return str(code) if code is not None else None


def _read_staged(
    exporter: Exporter, step_name: str, partition: str, manifests: StagedManifests | None = None
) -> Iterator[StripeJson]:
    """A step's staged objects of one partition, chunk after chunk in the order they were written. A partition has
    a chunk per flush of the listing, hundreds on a large account, each a small S3 object: their GETs go side by
    side (`CHUNK_LANES`), as one after another their round trips would add up to seconds per partition."""
    prefix = _partition_prefix(exporter, step_name, partition)
    keys = _chunk_keys(exporter, prefix)
    if manifests is not None:
        manifests.check(step_name, keys, prefix)
    with ThreadPoolExecutor(max_workers=CHUNK_LANES, thread_name_prefix="staged-chunks") as pool:
        for body in pool.map(partial(_chunk_body, exporter), keys):
            yield from _objects_of(body)


def _read_chunk(exporter: Exporter, chunk_key: str) -> Iterator[StripeJson]:
    return _objects_of(_chunk_body(exporter, chunk_key))


def _chunk_body(exporter: Exporter, chunk_key: str) -> bytes:
    body: bytes = exporter.s3.get_object(Bucket=exporter.settings.staging_bucket, Key=chunk_key)["Body"].read()
    return body


def _objects_of(body: bytes) -> Iterator[StripeJson]:
    for line in body.decode().splitlines():
        if line:
            yield json.loads(line)


def _chunk_keys(exporter: Exporter, prefix: str) -> list[str]:
    keys: list[str] = []
    paginator = exporter.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=exporter.settings.staging_bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


# -- the run ---------------------------------------------------------------------------------------------------


def start_backfill(
    exporter: Exporter, backfill_range: BackfillRange, upload_mode: UploadMode = "bulk"
) -> ExportOutcome:
    """Start a run (or, if this run id has a checkpoint already, resume it: an invocation retried by Lambda)."""
    checkpoint = load_checkpoint(exporter, exporter.run_id)
    if checkpoint is None:
        checkpoint = _save(
            exporter,
            Checkpoint(
                run_id=exporter.run_id, range=backfill_range, started_at=exporter.clock(), upload_mode=upload_mode
            ),
        )
        exporter.log.info(
            "backfill started",
            extra={"range": backfill_range.model_dump(mode="json"), "upload_mode": upload_mode},
        )
    else:
        exporter.log.info("backfill resumed from its checkpoint", extra={"step": STEPS[checkpoint.step].name})
    return _run(exporter, checkpoint)


def resume_backfill(exporter: Exporter) -> ExportOutcome:
    checkpoint = load_checkpoint(exporter, exporter.run_id)
    if checkpoint is None:
        raise BackfillNotFound(f"backfill {exporter.run_id}: no checkpoint to resume from (it never started)")
    return _run(exporter, checkpoint)


def _run(exporter: Exporter, checkpoint: Checkpoint) -> ExportOutcome:
    if checkpoint.staged_chunks:
        # A resumed run: what earlier invocations staged must all still be there before anything builds on it.
        StagedManifests(exporter, checkpoint).verify_all(checkpoint.staged_chunks)
    try:
        return _run_steps(exporter, checkpoint)
    except ConcurrentRunError as error:
        # A duplicate delivery of a continuation, say: the other invocation carries the run on; this one ends
        # without a continuation of its own, so the run never forks.
        exporter.log.warning("backfill taken over by another invocation", extra={"reason": str(error)})
        return ExportOutcome(
            mode="backfill", run_id=checkpoint.run_id, finished=False, customers_enqueued=0, detail={"superseded": True}
        )


def _run_steps(exporter: Exporter, checkpoint: Checkpoint) -> ExportOutcome:
    enqueued_before = checkpoint.customers_enqueued
    while not checkpoint.finished:
        step = STEPS[checkpoint.step]
        if step.resource is not None:
            checkpoint, step_done = _list_group(exporter, checkpoint)
        elif step is PARTITION_CUSTOMERS:
            checkpoint, step_done = _partition_customers(exporter, checkpoint)
        else:
            checkpoint, step_done = _assemble(exporter, checkpoint)
        if step_done:
            checkpoint = _next_step(exporter, checkpoint)
        elif not checkpoint.finished:
            return _outcome(exporter, checkpoint, enqueued_before, hand_over=True)
    return _outcome(exporter, checkpoint, enqueued_before, hand_over=False)


def _next_step(exporter: Exporter, checkpoint: Checkpoint) -> Checkpoint:
    next_index = checkpoint.step + 1
    if next_index == len(STEPS):
        checkpoint = _save(exporter, checkpoint.model_copy(update={"finished": True}))
        _hand_cursor_to_incremental(exporter, checkpoint)
        return checkpoint
    update: dict[str, Any] = {
        "step": next_index,
        "lists": {},
        "starting_after": None,
        "last_created": None,
        "created_lte": None,
        "chunk": 0,
        "position": 0,
    }
    if STEPS[checkpoint.step] is LIST_CUSTOMERS:
        per_partition = exporter.limits.customers_per_partition
        update["partitions"] = max(1, math.ceil(checkpoint.customers_listed / per_partition))
    return _save(exporter, checkpoint.model_copy(update=update))


def _outcome(exporter: Exporter, checkpoint: Checkpoint, enqueued_before: int, *, hand_over: bool) -> ExportOutcome:
    detail = checkpoint.model_dump(
        mode="json",
        include={
            "step",
            "partitions",
            "customers_listed",
            "objects_listed",
            "pages_staged",
            "customers_enqueued",
            "customer_heads_sent",
            "customers_set_aside",
            "upload_mode",
        },
    )
    detail["step_name"] = STEPS[checkpoint.step].name
    if hand_over:
        exporter.log.info("backfill handing over to a continuation", extra=detail)
    else:
        exporter.log.info("backfill finished", extra=detail)
    return ExportOutcome(
        mode="backfill",
        run_id=checkpoint.run_id,
        finished=not hand_over,
        customers_enqueued=checkpoint.customers_enqueued - enqueued_before,
        continuation=Continuation(resume="backfill", run_id=checkpoint.run_id) if hand_over else None,
        detail=detail,
    )


def _listing_group(checkpoint: Checkpoint) -> tuple[Step, ...]:
    """The listing steps read together from `checkpoint.step`: it and the listing steps right after it (the
    catalog with the customers; the customer-owned lists), which do not depend on one another."""
    group: list[Step] = []
    for step in STEPS[checkpoint.step :]:
        if step.resource is None:
            break
        group.append(step)
    return tuple(group)


def _list_params(checkpoint: Checkpoint, resource: StripeList) -> dict[str, Any]:
    rng = checkpoint.range
    if resource is StripeList.CUSTOMERS:
        return rng.customer_filter()
    if resource in CATALOG_LISTS:
        return {}  # the whole catalog: a customer in the range can be on a price of any age
    owned = next(o for o in (*OWNED_LISTS, REFUNDS_WITH_OWNER) if o.resource is resource)
    return {**owned.params, **rng.owned_filter()}


def _list_group(exporter: Exporter, checkpoint: Checkpoint) -> tuple[Checkpoint, bool]:
    """List a group of types globally, 100 per page, several pages at a time and the types side by side
    (`WindowedLists`), into their staging buffers; write and checkpoint at each flush."""
    group = _listing_group(checkpoint)
    progress = dict(checkpoint.lists)
    if not progress:
        # The group starts; or a checkpoint written before groups existed resumes: its step's cursor is one window.
        first = ListProgress(
            windows=[
                ListWindow(
                    starting_after=checkpoint.starting_after,
                    last_created=checkpoint.last_created,
                    created_lte=checkpoint.created_lte,
                )
            ],
            chunk=checkpoint.chunk,
        )
        progress = {group[0].name: first, **{step.name: ListProgress() for step in group[1:]}}
    # Stripe limits each endpoint apart from the whole (docs/sources.md#stripe-rate-limits): each list keeps to its
    # part of one endpoint's limit, all of them together to the export's share (the StripeApi's limiter).
    lanes = exporter.limits.stripe_lanes
    per_endpoint = exporter.settings.stripe_endpoint_requests_per_second()
    specs: list[ListSpec] = []
    for step in group:
        resource = step.resource
        if resource is None or progress[step.name].finished:
            continue
        endpoint = RequestLimiter(per_endpoint, max_connections=lanes)
        specs.append(
            ListSpec(
                name=step.name,
                fetch=partial(_completed_page, exporter, resource, endpoint=endpoint),
                params=_list_params(checkpoint, resource),
                windows=progress[step.name].windows,
                floor=_oldest_possible(checkpoint, resource),
            )
        )

    def restarting(name: str, window: ListWindow) -> None:
        # The object the window stopped after was deleted since (an invoice item, say).
        exporter.log.warning(
            "backfill cursor object is gone; restarting the list from its creation time",
            extra={"list": name, "starting_after": window.starting_after, "created_lte": window.last_created},
        )

    lists = WindowedLists(specs, lanes=lanes, on_restart=restarting)
    stagers = {step.name: Stager(exporter, step) for step in group}
    resources = {step.name: step.resource for step in group}
    pages = objects = customers = 0
    oldest_customer = checkpoint.oldest_customer_created

    def flush(checkpoint: Checkpoint) -> Checkpoint:
        staged = dict(checkpoint.staged_chunks)
        for name, stager in stagers.items():
            state = progress[name]
            if stager.size_bytes or (lists.finished(name) and not state.finished):
                # Each list's chunks are numbered on their own; a list that ends writes its last (maybe empty).
                stager.flush(state.chunk)
                staged[name] = state.chunk + 1
                state = state.model_copy(update={"chunk": state.chunk + 1})
            progress[name] = state.model_copy(update={"windows": lists.windows(name), "finished": lists.finished(name)})
        exporter.stats.pages_staged += pages
        return _save(
            exporter,
            checkpoint.model_copy(
                update={
                    "lists": dict(progress),
                    "starting_after": None,
                    "last_created": None,
                    "created_lte": None,
                    "staged_chunks": staged,
                    "pages_staged": checkpoint.pages_staged + pages,
                    "objects_listed": checkpoint.objects_listed + objects,
                    "customers_listed": checkpoint.customers_listed + customers,
                    "oldest_customer_created": oldest_customer,
                }
            ),
        )

    for name, page in lists.pages():
        resource, stager = resources[name], stagers[name]
        if resource is StripeList.CUSTOMERS:
            # As the page comes, not once the list is read whole: the upload starts a page's round trip into the run.
            checkpoint = _send_heads(exporter, checkpoint, page.data)
        for obj in page.data:
            if resource in CATALOG_LISTS or resource is StripeList.CUSTOMERS:
                stager.add(UNPARTITIONED, obj)
                if resource is StripeList.CUSTOMERS:
                    customers += 1
                    created = created_of(obj)
                    if created is not None and (oldest_customer is None or created < oldest_customer):
                        oldest_customer = created
                continue
            owner, obj = refund_with_owner(obj) if resource is StripeList.REFUNDS else (customer_of(obj), obj)
            if owner is not None:  # None: a guest charge, say; no customer, nothing to import
                stager.add(str(partition_of(owner, checkpoint.partitions)), obj)
        pages += 1
        objects += len(page.data)
        exporter.stats.objects_listed += len(page.data)
        if exporter.time_to_hand_over():
            lists.stop()  # the pages in flight still come, and are staged with the rest
        if sum(stager.size_bytes for stager in stagers.values()) >= exporter.limits.flush_bytes:
            checkpoint = flush(checkpoint)
            pages = objects = customers = 0
    # Read whole, or stopped for the hand-over: what is buffered is written, with the windows left to read.
    checkpoint = flush(checkpoint)
    if not lists.finished():
        return checkpoint, False
    # The group is done: its last step is the one `_next_step` moves past (and saves).
    return checkpoint.model_copy(update={"step": checkpoint.step + len(group) - 1}), True


def _completed_page(
    exporter: Exporter, resource: StripeList, query: dict[str, Any], endpoint: RequestLimiter | None = None
) -> Page:
    """One page of a list, each object completed (its embedded lists past their first page fetched)."""
    page = exporter.api.list_page(resource, query, endpoint=endpoint)
    return Page(
        data=[complete(exporter.api, resource, obj, refunds_per_charge=False) for obj in page.data],
        has_more=page.has_more,
    )


def _oldest_possible(checkpoint: Checkpoint, resource: StripeList) -> int:
    """Where a list's objects probably begin, for cutting it into windows (`WindowedLists`): a customer's objects
    are created after it, so its lists begin with the oldest customer; the customers and the catalog, at the
    range's start or when Stripe opened. Only an estimate: the oldest window has no lower bound."""
    if resource in CATALOG_LISTS:
        return STRIPE_EPOCH
    start = checkpoint.range.created_from
    start_s = _epoch(start) if start is not None else STRIPE_EPOCH
    if resource is StripeList.CUSTOMERS or checkpoint.oldest_customer_created is None:
        return start_s
    return max(start_s, checkpoint.oldest_customer_created)


def _partition_customers(exporter: Exporter, checkpoint: Checkpoint) -> tuple[Checkpoint, bool]:
    """Copy the listed customers into their partitions, one source chunk at a time."""
    stager = Stager(exporter, PARTITION_CUSTOMERS)
    prefix = _partition_prefix(exporter, LIST_CUSTOMERS.name, UNPARTITIONED)
    sources = _chunk_keys(exporter, prefix)
    StagedManifests(exporter, checkpoint).check(LIST_CUSTOMERS.name, sources, prefix)
    position = checkpoint.position
    while position < len(sources):
        for customer in _read_chunk(exporter, sources[position]):
            stager.add(str(partition_of(str(customer["id"]), checkpoint.partitions)), customer)
        position += 1
        last = position == len(sources)
        out_of_time = exporter.time_to_hand_over()
        if last or out_of_time or stager.size_bytes >= exporter.limits.flush_bytes:
            stager.flush(checkpoint.chunk)
            staged = {**checkpoint.staged_chunks, PARTITION_CUSTOMERS.name: checkpoint.chunk + 1}
            checkpoint = _save(
                exporter,
                checkpoint.model_copy(
                    update={"position": position, "chunk": checkpoint.chunk + 1, "staged_chunks": staged}
                ),
            )
            if out_of_time and not last:
                return checkpoint, False
    return checkpoint, True


def _send_heads(exporter: Exporter, checkpoint: Checkpoint, customers: list[StripeJson]) -> Checkpoint:
    """The head of each customer of a page just listed (docs/architecture.md "Customer heads"): its customer object
    alone, sent now so that the upload creates ChartMogul's customers while the export lists the rest, most of a
    backfill's time. Its snapshot time is the run's, as its full snapshot's will be. Sent again when a crash comes
    before the page is staged and checkpointed (the page is listed again): a head of a customer ChartMogul holds
    writes nothing (`apply_customer_only`)."""
    if not exporter.settings.backfill_customer_heads:
        return checkpoint
    heads = [
        (CustomerSnapshot(api_version=STRIPE_API_VERSION, customer=customer, customer_only=True), checkpoint.started_at)
        for customer in customers
        if customer.get("deleted") is not True  # the customers list holds none; a head is never a deletion
    ]
    sent = exporter.send_snapshots(heads, upload_mode=checkpoint.upload_mode)
    return checkpoint.model_copy(update={"customer_heads_sent": checkpoint.customer_heads_sent + sent})


def _assemble(exporter: Exporter, checkpoint: Checkpoint) -> tuple[Checkpoint, bool]:
    """One partition at a time: read its staged objects back, build each customer's snapshot, send them."""
    catalog = Catalog(exporter.api)
    manifests = StagedManifests(exporter, checkpoint)
    for resource in CATALOG_LISTS:
        for obj in _read_staged(exporter, resource.value, UNPARTITIONED, manifests):
            catalog.add(resource, obj)
    deletions = RecentDeletions(exporter.api)
    # The next partition is read while this one is assembled and sent: reading (S3 round trips, JSON decoding) and
    # sending (S3 and SQS round trips) took about as long as each other, one after the other. Only the read-ahead
    # thread reads staged data, so `manifests` is never used by two threads at once.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="partition-read-ahead") as read_ahead:

        def read(partition: int) -> Future[dict[str, CustomerRecords]] | None:
            if partition >= checkpoint.partitions:
                return None
            return read_ahead.submit(_partition_records, exporter, partition, manifests)

        next_records = read(checkpoint.position)
        while next_records is not None:
            partition = checkpoint.position
            records = next_records.result()
            next_records = read(partition + 1)
            checkpoint = _assemble_partition(exporter, checkpoint, partition, records, catalog, deletions)
            if next_records is not None and exporter.time_to_hand_over():
                next_records.cancel()  # or, already reading, left unused: the continuation reads it again
                return checkpoint, False
    return checkpoint, True


def _assemble_partition(
    exporter: Exporter,
    checkpoint: Checkpoint,
    partition: int,
    records: dict[str, CustomerRecords],
    catalog: Catalog,
    deletions: RecentDeletions,
) -> Checkpoint:
    """Build each customer's snapshot of one partition from its staged records, send them, checkpoint past it."""
    snapshot_time = checkpoint.started_at
    orphans_skipped = drafts = set_aside = 0
    snapshots: list[tuple[CustomerSnapshot, datetime]] = []
    found = _orphans_records(exporter, records, checkpoint.range, deletions)
    for customer_id in sorted(records):
        customer_records = records[customer_id]
        try:
            if customer_records.customer is None:
                whole = found[customer_id]
                if isinstance(whole, stripe.StripeError):
                    raise whole
                if whole is None:
                    orphans_skipped += 1
                    continue
                customer_records = whole
            snapshot = assemble_snapshot(customer_records, catalog)
        except stripe.StripeError as error:
            # The per-customer requests of assembly (an orphan's customer, a deleted price): one customer
            # Stripe refuses for good is set aside; a passing failure fails the invocation, which resumes.
            if not is_permanent_for_object(error):
                raise
            exporter.set_aside_customer(customer_id, error)
            set_aside += 1
            continue
        drafts += customer_records.drafts_skipped
        snapshots.append((snapshot, snapshot_time))
    # Bulk imports by default for a backfill's many customers (docs/architecture.md "Upload modes"); the run's
    # request may ask for the per-object API instead.
    sent = exporter.send_snapshots(snapshots, upload_mode=checkpoint.upload_mode)
    return _save(
        exporter,
        checkpoint.model_copy(
            update={
                "position": partition + 1,
                "customers_enqueued": checkpoint.customers_enqueued + sent,
                "orphans_skipped": checkpoint.orphans_skipped + orphans_skipped,
                "drafts_skipped": checkpoint.drafts_skipped + drafts,
                "customers_set_aside": checkpoint.customers_set_aside + set_aside,
            }
        ),
    )


def _partition_records(exporter: Exporter, partition: int, manifests: StagedManifests) -> dict[str, CustomerRecords]:
    records: dict[str, CustomerRecords] = {}
    for step_name, resource in PARTITIONED_STEPS:
        for obj in _read_staged(exporter, step_name, str(partition), manifests):
            owner = str(obj["id"]) if resource is StripeList.CUSTOMERS else customer_of(obj)
            if owner is None:
                continue
            if owner not in records:
                records[owner] = CustomerRecords(owner)
            records[owner].add(resource, obj)
    return records


def _orphans_records(
    exporter: Exporter, records: dict[str, CustomerRecords], backfill_range: BackfillRange, deletions: RecentDeletions
) -> dict[str, CustomerRecords | stripe.StripeError | None]:
    """The whole records of each orphan of a partition (objects whose customer was not listed), side by side: each
    costs a request or two (`_adopt_orphan`, `_deleted_in_range`), a few hundred milliseconds apiece. None: an
    orphan a bounded run leaves out; a Stripe error that is permanent for the customer, to set it aside."""
    orphans = [customer_id for customer_id in sorted(records) if records[customer_id].customer is None]

    def find(customer_id: str) -> CustomerRecords | stripe.StripeError | None:
        staged = records[customer_id]
        try:
            if backfill_range.bounded:
                # Objects of a customer outside the range (created before `from`, or after `to`), or of one
                # created in it and deleted since: deleted customers are never listed.
                return _deleted_in_range(exporter, staged, backfill_range, deletions)
            return _adopt_orphan(exporter, staged, deletions)
        except stripe.StripeError as error:
            if not is_permanent_for_object(error):
                raise  # a passing failure fails the invocation, which resumes
            return error

    if not orphans:
        return {}
    with ThreadPoolExecutor(max_workers=exporter.limits.stripe_lanes, thread_name_prefix="stripe-orphans") as pool:
        return dict(zip(orphans, pool.map(find, orphans), strict=True))


def _adopt_orphan(exporter: Exporter, staged: CustomerRecords, deletions: RecentDeletions) -> CustomerRecords:
    """Objects whose customer was not listed: it was deleted in Stripe, or created after the customers list."""
    last_known = deletions.last_known(staged.customer_id)
    if last_known is not None:
        # Deleted in the last 30 days: Stripe would answer its deleted-object stub, so no request for it.
        staged.set_customer({"id": staged.customer_id, "object": "customer", "deleted": True}, last_known=last_known)
        add_subscriptions_of_deleted_customer(exporter.api, staged)  # the global `status=all` list left them out
        return staged
    customer = exporter.api.retrieve(StripeList.CUSTOMERS, staged.customer_id)
    if customer.get("deleted") is True:
        staged.set_customer(customer)
        add_subscriptions_of_deleted_customer(exporter.api, staged)
        return staged
    # Created while the backfill ran: its staged objects may be partial, so fetch it whole (rare).
    return fetch_customer_records(exporter.api, staged.customer_id, deletions=deletions)


def _deleted_in_range(
    exporter: Exporter, staged: CustomerRecords, backfill_range: BackfillRange, deletions: RecentDeletions
) -> CustomerRecords | None:
    """The records of an orphan of a bounded run whose customer was created in the range and deleted since; None
    for the usual orphan, a live customer created outside the range.

    Deleted in the last 30 days: its `customer.deleted` event keeps its `created`. Deleted before that, it has no
    object since (an account's objects of a deleted customer stop at its deletion), so only an orphan whose newest
    object is older than the event window is asked about (one request); if Stripe answers the deleted stub, which
    no longer says when the customer was created, its first object stands in for that time, and its whole
    history is fetched per customer (objects before `from` included).
    """
    last_known = deletions.last_known(staged.customer_id)
    if last_known is not None:
        created = last_known.get("created")
        if not isinstance(created, int) or not backfill_range.contains(created):
            return None
        staged.set_customer({"id": staged.customer_id, "object": "customer", "deleted": True}, last_known=last_known)
        add_subscriptions_of_deleted_customer(exporter.api, staged)  # the global `status=all` list left them out
        return staged
    newest = max((created_of(obj) or 0 for obj in staged.objects()), default=0)
    if newest >= int(exporter.clock().timestamp()) - EVENT_RETENTION_S + RETENTION_SAFETY_S:
        return None  # active within the event window, and no deletion event: a live customer outside the range
    customer = exporter.api.retrieve(StripeList.CUSTOMERS, staged.customer_id)
    if customer.get("deleted") is not True:
        return None
    whole = fetch_customer_records(exporter.api, staged.customer_id, deletions=deletions)
    first = min((at for obj in whole.objects() if (at := created_of(obj)) is not None), default=None)
    return whole if first is not None and backfill_range.contains(first) else None


def _hand_cursor_to_incremental(exporter: Exporter, checkpoint: Checkpoint) -> None:
    """A whole-history backfill covers every change before it started: incremental runs can start there.

    A bounded one covers only its customers: moving the cursor would skip other customers' changes.
    """
    if checkpoint.range.bounded:
        return
    started = int(checkpoint.started_at.timestamp())
    current = load_cursor(exporter)
    if current is None or current.created < started:
        save_cursor(exporter, EventCursor(created=started))
