"""Per-customer leases: at most one apply of a customer's bundle at a time, across every concurrent upload.

Why: the upload function runs several instances at once (`ScalingConfig.MaximumConcurrency`) and SQS standard
queues deliver in any order, so an older and a newer bundle of one customer can be applied at the same moment.
Without an exclusion the older one can pass its staleness check, let the newer one apply in full, then carry on
and win: a deleted customer re-created, a cancellation undone. Every path into the uploader (the live queue, a
bulk import, a DLQ replay, a manual invoke) goes through `BundleUploader`, which applies a bundle only while it
holds its customer's lease, and takes the staleness decision inside it.

The mechanism, and why this one: a lease item per customer in the state table, taken with a conditional put
(`attribute_not_exists(pk) OR expires_at < :now`) and released with a conditional delete (`holder = :me`).
SQS FIFO message groups would serialize too, but allow batches of 10 and no batching window, which rules out
large bulk imports; conditional writes on every id-map item alone would not stop two applies from interleaving
their ChartMogul writes. A lease costs two small writes per customer apply; a batch's leases are taken and given
back a hundred a request (TransactWriteItems, two write units an item).

Expiry: a lease lasts until the holder's invocation must have ended (its deadline, from the Lambda context) plus
a margin for clock skew, never longer than `MAX_LEASE_S`. Lambda stops an invocation at its timeout, so a holder
cannot outlive its lease; and a crash while holding one blocks the customer only until that moment, which is
shorter than the upload queue's visibility timeout (6 x the function timeout), so the crashed record's redelivery
always finds the lease free.

A lease that cannot be had within the wait is a transient failure: the record is redelivered (75 s later at
first, doubling with each receive: failures.py `RedeliveryBackoff`, whose delays before the fifth receive outlast
MAX_LEASE_S); by then the other apply has finished, and the staleness check decides. A customer head never waits
(`hold_if_free`): the apply holding the lease creates that customer itself.

    leases = CustomerLeases(state, data_source_uuid)
    with leases.hold_one("cus_123", budget):
        ...  # read the applied version, decide, write
"""

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger

from chartmogul_sync.state import StateTable, key

from .client import ChartMogulError, FailureKind, TimeBudget
from .limiter import map_concurrently

logger = Logger(child=True)

# Clock skew between Lambda hosts is far below this (they run NTP); the margin only keeps an expiry on the safe side.
CLOCK_MARGIN_S = 30.0
# A lease never lasts longer than this: Lambda's longest timeout (900 s, the upload function's) plus the margin,
# far below the upload queue's visibility timeout (5,400 s).
MAX_LEASE_S = 900.0 + CLOCK_MARGIN_S
# How long one apply waits for a lease another instance holds before the record is given back to SQS.
DEFAULT_WAIT_S = 20.0
_FIRST_PAUSE_S = 0.05
_MAX_PAUSE_S = 1.0
# The leases of a batch another upload holds are waited for side by side.
BATCH_WORKERS = 16
# A lease may be taken when nobody holds it or its holder's time is up; given back only by its holder.
_FREE = "attribute_not_exists(pk) OR expires_at < :now"
_OURS = "holder = :me"


class LeaseUnavailable(ChartMogulError):
    """Another upload is applying this customer: a transient failure of this record."""

    def __init__(self, customer_external_id: str, waited_s: float) -> None:
        super().__init__(
            f"lease customer {customer_external_id}",
            FailureKind.TRANSIENT,
            retry_now=False,
            detail=f"another upload is applying this customer (waited {waited_s:.1f} s); SQS will redeliver",
        )
        self.customer_external_id = customer_external_id


class CustomerLeases:
    def __init__(
        self,
        state: StateTable,
        data_source_uuid: str,
        *,
        wait_s: float = DEFAULT_WAIT_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._state = state
        self._pk = key("lease", data_source_uuid)
        self._wait_s = wait_s
        self._clock = clock
        self._sleep = sleep
        # One holder id per instance of this class: a lease names the upload that holds it (in logs and items).
        self.holder = uuid.uuid4().hex

    @contextmanager
    def hold_one(self, customer_external_id: str, budget: TimeBudget) -> Iterator[None]:
        """Hold the customer's lease for the block, waiting for it (bounded); raises LeaseUnavailable."""
        waited = self._acquire_waiting(customer_external_id, budget)
        if not waited:
            raise LeaseUnavailable(customer_external_id, self._wait_s)
        try:
            yield
        finally:
            self.release(customer_external_id)

    @contextmanager
    def hold_if_free(self, customer_external_id: str, budget: TimeBudget) -> Iterator[bool]:
        """Hold the customer's lease for the block if nobody holds it now; yields whether it is held. Never waits.

        For work that another apply of the customer makes moot (a customer head: the apply holding the lease
        creates the customer itself), so waiting would only hold up this batch.
        """
        held = self.try_acquire(customer_external_id, budget)
        try:
            yield held
        finally:
            if held:
                self._release_quietly(customer_external_id)

    @contextmanager
    def hold_many(self, customer_external_ids: Iterable[str], budget: TimeBudget) -> Iterator[set[str]]:
        """Hold these customers' leases; yields the held ones.

        The free ones are taken at once, a hundred a request (`StateTable.put_each_if`: a batch of 500 customers
        costs 5 requests, not 500, before its first ChartMogul request); those another upload holds are waited
        for side by side, all within one wait (bounded as `hold_one`'s): an api-mode apply of the same customer
        holds its lease for a few requests, and a record given back to SQS would wait the queue's visibility
        timeout. Should a write fail, the leases taken are given back before the error is raised.
        """
        customer_ids = list(dict.fromkeys(customer_external_ids))
        held: set[str] = set()
        try:
            now = self._clock()
            lease = self._lease(now, budget)
            taken = self._state.put_each_if(self._pk, dict.fromkeys(customer_ids, lease), _FREE, {":now": int(now)})
            busy: list[str] = []
            for customer_id, written in taken:
                if written:
                    held.add(customer_id)
                else:
                    busy.append(customer_id)
            if busy:
                give_up_at = time.monotonic() + min(self._wait_s, max(0.0, budget.remaining() - 5.0))
                waited = map_concurrently(
                    lambda c: _outcome(lambda: self._acquire_waiting(c, budget, give_up_at)), busy, BATCH_WORKERS
                )
                held |= {c for c, outcome in zip(busy, waited, strict=True) if outcome is True}
                _raise_first_error(waited)
            yield held
        finally:
            self._release_many(held)

    def _release_many(self, customer_external_ids: set[str]) -> None:
        try:
            for customer_id, released in self._state.delete_each_if(
                self._pk, sorted(customer_external_ids), _OURS, {":me": self.holder}
            ):
                if not released:
                    _log_expired(customer_id)
        except Exception as error:  # the leases expire by themselves at their `expires_at`
            logger.warning(
                "could not give customer leases back; they expire by themselves",
                extra={"customers": len(customer_external_ids), "error": f"{type(error).__name__}: {error}"},
            )

    def _release_quietly(self, customer_external_id: str) -> None:
        try:
            self.release(customer_external_id)
        except Exception as error:  # the lease expires by itself at its `expires_at`
            logger.warning(
                "could not give a customer lease back; it expires by itself",
                extra={"customer_external_id": customer_external_id, "error": f"{type(error).__name__}: {error}"},
            )

    def try_acquire(self, customer_external_id: str, budget: TimeBudget) -> bool:
        now = self._clock()
        return self._state.put_if(self._pk, customer_external_id, self._lease(now, budget), _FREE, {":now": int(now)})

    def release(self, customer_external_id: str) -> None:
        """Give the lease back (only ours: one that expired and was taken over is left to its new holder)."""
        if not self._state.delete_if(self._pk, customer_external_id, _OURS, {":me": self.holder}):
            _log_expired(customer_external_id)

    def _acquire_waiting(self, customer_external_id: str, budget: TimeBudget, give_up_at: float | None = None) -> bool:
        if give_up_at is None:
            give_up_at = time.monotonic() + min(self._wait_s, max(0.0, budget.remaining() - 5.0))
        pause = _FIRST_PAUSE_S
        # Bounded: each pass sleeps, and the loop ends at `give_up_at`.
        while True:
            if self.try_acquire(customer_external_id, budget):
                return True
            if time.monotonic() + pause > give_up_at:
                return False
            self._sleep(pause * random.uniform(0.5, 1.0))  # jitter: two waiters do not retry in step
            pause = min(_MAX_PAUSE_S, pause * 2)

    def _lease(self, now: float, budget: TimeBudget) -> dict[str, object]:
        """The lease item's attributes: who holds it, and until when."""
        return {"holder": self.holder, "expires_at": int(now + self._duration(budget)) + 1}

    def _duration(self, budget: TimeBudget) -> float:
        remaining = budget.remaining()
        return min(MAX_LEASE_S, (remaining if remaining != float("inf") else MAX_LEASE_S) + CLOCK_MARGIN_S)


def _log_expired(customer_external_id: str) -> None:
    logger.warning(
        "a customer lease had expired before its apply ended", extra={"customer_external_id": customer_external_id}
    )


def _outcome(attempt: Callable[[], bool]) -> bool | Exception:
    """What a lease attempt gave, or the error it raised (raised by hold_many once every other lease is settled)."""
    try:
        return attempt()
    except Exception as error:
        return error


def _raise_first_error(outcomes: Iterable[bool | Exception]) -> None:
    failed = next((outcome for outcome in outcomes if isinstance(outcome, Exception)), None)
    if failed is not None:
        raise failed
