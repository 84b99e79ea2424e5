"""A bulk batch's state-table work before its first ChartMogul request: batched reads and leases side by side.

Against DynamoDB in moto, counting the requests the state table's client sends (botocore's `before-call` event).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import moto
import pytest

from chartmogul_sync.sinks.chartmogul.apply import KnownCustomer
from chartmogul_sync.sinks.chartmogul.client import TimeBudget
from chartmogul_sync.sinks.chartmogul.idmap import IdMap
from chartmogul_sync.sinks.chartmogul.leases import CustomerLeases
from chartmogul_sync.state import StateTable, key
from tests.fixtures.state_table import create_state_table


@pytest.fixture
def state():
    with moto.mock_aws():
        yield create_state_table("state")


def count_requests(state: StateTable) -> Counter[str]:
    sent: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        sent[model.name] += 1

    state._client.meta.events.register("before-call.dynamodb", count)
    return sent


def test_get_many_reads_a_hundred_items_a_request_and_leaves_out_the_missing(state):
    for n in range(250):
        state.put("p", f"s{n:03d}", {"n": n})
    sent = count_requests(state)
    wanted = [("p", f"s{n:03d}") for n in range(0, 300)] + [("p", "s001")]  # 50 missing, one asked twice
    found = state.get_many(wanted)
    assert sent == Counter({"BatchGetItem": 3})  # 300 distinct keys
    assert sorted(found) == [("p", f"s{n:03d}") for n in range(250)]
    assert found[("p", "s042")]["n"] == 42


def test_get_many_asks_again_for_what_dynamodb_left_unprocessed(state):
    """A BatchGetItem answer holds at most 16 MB: 100 items of 300 KB come back in several requests."""
    blob = "x" * 300_000
    for n in range(100):
        state.put("p", f"s{n:03d}", {"blob": blob})
    sent = count_requests(state)
    found = state.get_many(("p", f"s{n:03d}") for n in range(100))
    assert len(found) == 100
    assert sent["BatchGetItem"] > 1


def test_a_batch_reads_its_entries_once_and_answers_from_them_and_its_own_writes(state):
    idmap = IdMap(state, api=None, data_source_uuid="ds_1")  # type: ignore[arg-type]  # no ChartMogul call
    customers = [f"cus_{n:03d}" for n in range(150)]
    for customer in customers[:100]:
        idmap.remember_customer(customer, KnownCustomer(exists=True, uuid=f"uuid-{customer}"))
        idmap.record_applied(customer, "2025-01-01T00:00:00Z", "digest")
    sent = count_requests(state)
    with idmap.read_ahead(customers):
        for _again in range(2):  # every read, not only the first
            assert [idmap.known_customer(c).exists for c in customers] == [True] * 100 + [False] * 50
            assert idmap.last_applied("cus_000") == ("2025-01-01T00:00:00Z", "digest")
            assert idmap.last_applied("cus_120") is None
        assert sent == Counter({"BatchGetItem": 3})  # 300 items, no GetItem
        # A read after this upload's own write sees the write, still without asking DynamoDB.
        idmap.remember_customer("cus_120", KnownCustomer(exists=True, uuid="uuid-cus_120"))
        assert idmap.record_applied("cus_120", "2025-02-01T00:00:00Z", "digest-2")
        assert idmap.known_customer("cus_120").uuid == "uuid-cus_120"
        assert idmap.last_applied("cus_120") == ("2025-02-01T00:00:00Z", "digest-2")
        assert "GetItem" not in sent
        # A write that did not happen (an older bundle) leaves what DynamoDB holds, read from it.
        assert not idmap.record_applied("cus_120", "2025-01-15T00:00:00Z", "digest-old")
        assert idmap.last_applied("cus_120") == ("2025-02-01T00:00:00Z", "digest-2")
    # What was answered from memory is what DynamoDB holds: a fresh reader sees the same.
    fresh = IdMap(state, api=None, data_source_uuid="ds_1")  # type: ignore[arg-type]
    assert fresh.known_customer("cus_120").uuid == "uuid-cus_120"
    assert fresh.last_applied("cus_120") == ("2025-02-01T00:00:00Z", "digest-2")
    sent.clear()
    assert idmap.known_customer("cus_001").uuid == "uuid-cus_001"  # after the block: read from DynamoDB
    assert sent == Counter({"GetItem": 1})


def test_a_batch_entry_a_newer_bundle_overtook_is_read_again_from_dynamodb(state):
    """Within a block the lease keeps other writers out; should one have written anyway (a newer version stored),
    the failed conditional write drops the entry from memory instead of answering with what was not written."""
    from chartmogul_sync.sinks.chartmogul.idmap import Overtaken

    idmap = IdMap(state, api=None, data_source_uuid="ds_1")  # type: ignore[arg-type]
    other = IdMap(state, api=None, data_source_uuid="ds_1")  # type: ignore[arg-type]
    with idmap.read_ahead(["cus_1"]):
        assert not idmap.known_customer("cus_1").exists
        with other.writing("cus_1", "2025-03-01T00:00:00Z"):
            other.remember_customer("cus_1", KnownCustomer(exists=True, uuid="newer"))
        with idmap.writing("cus_1", "2025-02-01T00:00:00Z"), pytest.raises(Overtaken):
            idmap.remember_customer("cus_1", KnownCustomer(exists=True, uuid="older"))
        assert idmap.known_customer("cus_1").uuid == "newer"


def test_a_batch_holds_the_free_leases_leaves_the_others_theirs_and_gives_its_own_back(state):
    leases = CustomerLeases(state, "ds_1", wait_s=0.2)  # the others' leases are held throughout: a short wait
    other = CustomerLeases(state, "ds_1")
    customers = [f"cus_{n:03d}" for n in range(250)]
    budget = TimeBudget()  # no deadline
    with other.hold_many(customers[95:105] + customers[200:202], budget) as theirs:
        assert len(theirs) == 12
        sent = count_requests(state)
        with leases.hold_many(customers, budget) as held:
            assert held == set(customers) - theirs  # the others' leases are not taken from them
            assert len(list(state.query(key("lease", "ds_1")))) == 250
            # A hundred a request: three groups, each holding another's lease and so sent again without them;
            # those are waited for one by one (PutItem) until the wait runs out.
            assert sent["TransactWriteItems"] == 6
        leases_left = list(state.query(key("lease", "ds_1")))
        assert sorted(i["sk"] for i in leases_left) == sorted(theirs)  # ours given back, theirs kept
        assert {i["holder"] for i in leases_left} == {other.holder}
    assert list(state.query(key("lease", "ds_1"))) == []


def test_a_batch_waits_for_a_lease_another_upload_gives_back_soon(state):
    """An api-mode apply of one of the batch's customers holds its lease for a few requests: the batch waits for it
    instead of giving the record back to SQS, which would redeliver it only after the visibility timeout."""
    import threading

    other = CustomerLeases(state, "ds_1")
    budget = TimeBudget()
    with other.hold_many(["cus_001"], budget):
        releaser = threading.Timer(0.3, lambda: other.release("cus_001"))
        releaser.start()
        with CustomerLeases(state, "ds_1").hold_many(["cus_000", "cus_001"], budget) as held:
            assert held == {"cus_000", "cus_001"}
        releaser.join()


def test_a_transaction_cancelled_by_conflicts_is_sent_again_then_written_one_by_one(state, monkeypatch):
    """DynamoDB cancels a transaction that meets another write of one of its items (TransactionConflict): nothing
    was written, so it is sent again; after TRANSACT_ROUNDS the items are written one at a time, none lost."""
    from botocore.exceptions import ClientError

    import chartmogul_sync.state as state_module

    monkeypatch.setattr(state_module, "_CONFLICT_PAUSE_S", 0.0)
    conflicts = {"left": state_module.TRANSACT_ROUNDS}

    def conflict(params: dict[str, Any], **_: Any) -> None:
        if conflicts["left"]:
            conflicts["left"] -= 1
            reasons = [{"Code": "TransactionConflict"} for _ in params["TransactItems"]]
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )

    state._client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", conflict)
    sent = count_requests(state)
    items = {f"cus_{n}": {"holder": "me"} for n in range(3)}
    assert dict(state.put_each_if("lease#ds", items, "attribute_not_exists(pk)", {})) == dict.fromkeys(items, True)
    assert sent["PutItem"] == 3
    assert sorted(i["sk"] for i in state.query("lease#ds")) == sorted(items)
