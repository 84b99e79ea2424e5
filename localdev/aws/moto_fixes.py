"""moto as thread-safe as the services it stands for, and its SQS without quadratic costs; what it answers is unchanged.

The local runtime runs Lambda's concurrent instances as threads of one process, all calling moto in-process, and
moto's models take no locks. Two fixes make moto keep the guarantees the real services give concurrent callers:
- DynamoDB: every request is handled under one lock, so a conditional write is atomic, as DynamoDB's are
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html), and a
  query never walks a partition another thread is writing (moto 5.2.5 raised "dictionary changed size during
  iteration" there; the upload's leases and rate-sharing heartbeats rely on both);
- SQS: a delete and a receive of one queue are handled under the queue's lock (below).

DynamoDB's Query reads one partition (its cost is the partition's items); moto's sorts the whole table for each
query. The upload instances' rate-sharing heartbeats query their partition every second, so on a backfill of
10,000 customers (tens of thousands of items in the state table) 75% of the benchmark's CPU went there. A query
without an index now sorts only its own partition; what it returns is the same.

moto 5.2.5 (the pinned, newest release) builds a queue's whole attribute dictionary, whose
`ApproximateNumberOfMessages*` entries walk every message in the queue, each time it needs one attribute:
`SQSBackend.send_message` reads `queue.attributes.get("ContentBasedDeduplication")` for every message sent, and
`SQSBackend.receive_message` calls `is_message_valid_based_on_retention_period`, which calls
`get_queue_attributes(queue, ["MessageRetentionPeriod"])` (three full builds) for every message received
(moto/sqs/models.py). A backfill puts one message per customer through each queue, so the local world slowed
down with the square of the account's size: at 2,000 customers 39% of the benchmark's CPU went to those walks,
and a 10,000-customer backfill did not finish in an hour. `Queue.messages` (the visible messages, walked once
per receive) read the clock twice per message.

moto's TransactWriteItems deep-copies every table a transaction touches before it starts, to roll back should an
action fail: one transaction of the upload's customer leases (sinks/chartmogul/leases.py) copied the whole state
table, tens of thousands of items in a large backfill. A transaction of puts, deletes and condition checks (no
update) is now checked first and written only when every condition holds: the same outcome (all or nothing, the
same cancellation reasons, action by action), with no copy. A transaction holding an update is moto's own.

The process backend reaches moto through its server, whose dispatcher (moto/moto_server/werkzeug_app.py) finds
each request's service under one lock held for every request: `get_backend_for_host` lists moto's package
directory (`backends.list_of_moto_modules`, some 170 `isdir` calls, 1.4 ms) and tries its URL patterns one by one,
though the answer for a host never changes. Profiled on a 1,000-customer backfill, the moto process spent 20% of
its samples in threads waiting for that lock. The answer is now kept per host: the same service, found once.

`install()` patches, idempotently: `DynamoHandler.call_action` (the lock), `Table.query` (the partition sort),
`DynamoDBBackend.transact_write_items` (no table copies), `DomainDispatcherApplication.get_backend_for_host` (the
answer per host), and these members of moto's SQS models:
- `attributes` becomes a read-only mapping with the same keys whose values are computed when read, each exactly
  as moto's property computes it (`tests/unit/localdev_aws/test_moto_fixes.py` compares the two on every kind of
  queue the template declares);
- `messages` and the in-flight and delayed counts read the clock once per call, not once or twice per message
  (the same filters: visible and not delayed; not visible; delayed);
- `delete_message` finds the message in one pass over the queue instead of two that build a list per message,
  under the queue's lock: moto's own could lose a concurrent delete (a thread-safety bug, not only a cost:
  the message then stays in flight for the queue's whole visibility timeout, which stalled a 2,000-customer
  benchmark); `SQSBackend.receive_message` runs under the same lock.

Everything else (receive counts, redrive to the DLQ, visibility, retention) is moto's own code.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

_ORIGINALS: dict[str, Any] = {}


class LazyQueueAttributes(Mapping[str, Any]):
    """A queue's attributes, each computed when read (moto's `Queue.attributes`, one key at a time)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        keys = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            keys += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            keys += queue.KMS_ATTRIBUTES
        self._keys = keys

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        from moto.core.utils import camelcase_to_underscores

        queue = self._queue
        if key == "RedrivePolicy" and queue.redrive_policy:
            value = json.dumps(queue.redrive_policy)
        else:
            value = getattr(queue, camelcase_to_underscores(key))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _visible_messages(queue: Any) -> list[Any]:
    from moto.core.utils import unix_time_millis

    now = unix_time_millis()
    # moto's Message.visible is `now > visible_at`, Message.delayed is `now < delayed_until`.
    return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]


def _delete_message(queue: Any, receipt_handle: str) -> None:
    """moto's `Queue.delete_message` in one pass over the queue instead of two, each building a list per message."""
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    # Under the queue's own lock (moto's add_message appends under it): moto rebuilds the message list without
    # one, so two threads deleting at once could each write back a list holding the other's deleted message,
    # which then stays in flight forever (its receipt handle already counts as deleted).
    with queue._messages_lock:
        if receipt_handle in queue.deleted_messages:
            return  # already deleted: moto handles a second delete gracefully
        kept, matched = [], []
        for message in queue._messages:
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                matched.append(message)
            else:
                kept.append(message)
        if not matched:
            raise ReceiptHandleIsInvalid()
        for message in matched:  # deleted regardless of pending state, as moto does
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
        queue._messages = kept


def _under_queue_lock(operation: Any) -> Any:
    def locked(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # moto marks messages received, moves spent ones to the DLQ, and drops a message made visible again from
        # the pending set, without a lock: under the queue's lock (re-entrant; a long poll's wait releases it), a
        # receive, a delete, a send and a visibility change never interleave. Without it a receive iterating the
        # pending set while a visibility change removed from it failed with "Set changed size during iteration".
        with backend.get_queue(queue_name)._messages_lock:
            return operation(backend, queue_name, *args, **kwargs)

    return locked


def _not_visible_count(queue: Any) -> int:
    from moto.core.utils import unix_time_millis

    now = unix_time_millis()
    return sum(1 for m in queue._messages if not now > m.visible_at)


def _delayed_count(queue: Any) -> int:
    from moto.core.utils import unix_time_millis

    now = unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


_DYNAMODB_LOCK = threading.RLock()
# DynamoDB requests handled in this process, by operation (`dynamodb_requests()`: the benchmarks' figures).
_DYNAMODB_REQUESTS: Counter[str] = Counter()


def _serialized(call_action: Any) -> Any:
    def locked_call_action(handler: Any) -> Any:
        with _DYNAMODB_LOCK:
            target = handler.headers.get("X-Amz-Target") or handler.headers.get("x-amz-target") or ""
            _DYNAMODB_REQUESTS[str(target).rpartition(".")[2]] += 1
            return call_action(handler)

    return locked_call_action


def dynamodb_requests() -> dict[str, int]:
    """The DynamoDB requests moto has handled in this process so far, by operation (`{"PutItem": 120, ...}`)."""
    with _DYNAMODB_LOCK:
        return dict(_DYNAMODB_REQUESTS)


def _partition_query(query: Any) -> Any:
    def partition_query(table: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto's query without an index filters `all_items()`, which sorts the whole table, for the partition's
        # items: here `all_items()` gives that partition only, sorted the same way (by range key). Safe to swap for
        # the call: DynamoDB requests are handled one at a time (`_serialized`).
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is not None or hash_key is None:
            return query(table, hash_key, *args, **kwargs)
        partition = table.items.get(hash_key, {} if table.range_key_attr else None)
        items = list(partition.values()) if table.range_key_attr else [p for p in (partition,) if p is not None]

        def all_items() -> list[Any]:
            return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

        table.all_items = all_items
        try:
            return query(table, hash_key, *args, **kwargs)
        finally:
            del table.all_items

    return partition_query


_CHECKED_FIRST = frozenset({"Put", "Delete", "ConditionCheck"})


def _checked_first(transact_write_items: Any) -> Any:
    def transact_checked_first(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100 or any(
            len(item) != 1 or not item.keys() <= _CHECKED_FIRST for item in transact_items
        ):
            transact_write_items(backend, transact_items)  # limits and updates: moto's own, with its copies
            return
        from moto.dynamodb.comparisons import get_filter_expression
        from moto.dynamodb.exceptions import MultipleTransactionsException, TransactionCanceledException

        # Safe to check, then write: DynamoDB requests are handled one at a time (`_serialized`).
        seen: set[tuple[str, str]] = set()
        reasons: list[tuple[Any, Any, Any]] = []
        writes: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for item in transact_items:
            action, request = next(iter(item.items()))
            table_name = request["TableName"]
            table = backend.get_table(table_name)
            if action == "Put":
                key = {table.hash_key_attr: request["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = request["Item"][table.range_key_attr]
            else:
                key = request["Key"]
            target = (str(table_name), str(dict(sorted(key.items()))))  # moto's own test of one action per item
            if target in seen:
                raise MultipleTransactionsException()
            seen.add(target)
            current = backend.get_item(table_name, key)
            condition = request.get("ConditionExpression")
            holds = condition is None or get_filter_expression(
                condition, request.get("ExpressionAttributeNames"), request.get("ExpressionAttributeValues")
            ).expr(current)
            if holds:
                reasons.append((None, None, None))
                writes.append((action, request, key))
                continue
            old = None
            if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        for action, request, key in writes:
            if action == "Put":
                backend.put_item(request["TableName"], request["Item"])
            elif action == "Delete":
                backend.delete_item(request["TableName"], key)

    return transact_checked_first


def install() -> None:
    """Patch moto's SQS and DynamoDB (once per process; harmless to call again)."""
    from moto.sqs import models

    if _ORIGINALS:
        return
    queue: Any = models.Queue  # patched in place: typed Any, as monkey-patching is
    backend: Any = models.SQSBackend
    _ORIGINALS["attributes"] = queue.attributes
    queue.attributes = property(LazyQueueAttributes)
    queue.messages = property(_visible_messages)
    queue.approximate_number_of_messages_not_visible = property(_not_visible_count)
    queue.approximate_number_of_messages_delayed = property(_delayed_count)
    queue.delete_message = _delete_message
    backend.receive_message = _under_queue_lock(backend.receive_message)
    backend.change_message_visibility = _under_queue_lock(backend.change_message_visibility)
    from moto.dynamodb.responses import DynamoHandler

    dynamodb: Any = DynamoHandler
    dynamodb.call_action = _serialized(dynamodb.call_action)
    from moto.dynamodb.models.table import Table

    table: Any = Table
    table.query = _partition_query(table.query)
    from moto.dynamodb.models import DynamoDBBackend

    dynamodb_backend: Any = DynamoDBBackend
    _ORIGINALS["transact_write_items"] = dynamodb_backend.transact_write_items
    dynamodb_backend.transact_write_items = _checked_first(dynamodb_backend.transact_write_items)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    dispatcher: Any = DomainDispatcherApplication
    _ORIGINALS["get_backend_for_host"] = dispatcher.get_backend_for_host
    dispatcher.get_backend_for_host = _remembered_per_host(dispatcher.get_backend_for_host)


def _remembered_per_host(get_backend_for_host: Any) -> Any:
    """The dispatcher's service for a host, found once: it depends on the host alone (moto's URL patterns and
    package directory do not change while the server runs). Called under the dispatcher's own lock."""
    answers: dict[str | None, Any] = {}

    def backend_for_host(dispatcher: Any, host: str | None) -> Any:
        if host not in answers:
            answers[host] = get_backend_for_host(dispatcher, host)
        return answers[host]

    return backend_for_host


def installed() -> bool:
    """Whether `install()` has patched moto in this process (the process backend's child reports it)."""
    from moto.sqs import models

    queue: Any = models.Queue
    return bool(_ORIGINALS) and queue.delete_message is _delete_message


def original_attributes(queue: Any) -> dict[str, Any]:
    """What moto's own `Queue.attributes` returns for `queue` (for the tests that compare)."""
    from moto.sqs.models import Queue

    prop = _ORIGINALS.get("attributes", Queue.attributes)
    return dict(prop.fget(queue))
