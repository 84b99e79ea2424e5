"""DynamoDB state adapter: one table, items keyed by (pk, sk).

Key layout (one place, so two features never collide):
  pk="cursor#<source>"            sk="incremental"        the incremental export's event cursor (`cursor` JSON,
                                  `position`; sources/stripe/incremental.py)
  pk="backfill#<run_id>"          sk="checkpoint"         backfill progress (`checkpoint` JSON, `sequence_key`;
                                  sources/stripe/backfill.py, which also documents its S3 staging keys)
  pk="idmap#<data_source>"        sk="customer#<external_id>" what ChartMogul holds for one customer (uuid, fields,
                                  invoices, transactions, subscriptions, events; sinks/chartmogul/idmap.py)
  pk="idmap#<data_source>"        sk="plan#<external_id>"   a plan's uuid and fields
  pk="datasource"                 sk="<data source name>"   the ChartMogul data source's uuid
  pk="applied#<data_source>"      sk="<customer_external_id>" snapshot time and digest of the last bundle applied
  pk="lease#<data_source>"        sk="<customer_external_id>" who may apply a bundle of this customer now, and
                                  until when (`holder`, `expires_at`; sinks/chartmogul/leases.py)
  pk="idmap#<data_source>"        sk="customer#<external_id>#part#<n>#<i>" part i of n of a large customer's
                                  invoices and transactions (sinks/chartmogul/idmap.py)
  pk="failure#<sqs message id>"   sk="last"               why a transform, upload or Stripe events record last
                                  failed (`failure` JSON; `expires_at` TTL after the DLQs' retention; failures.py),
                                  for its dead letter
  pk="uploaders"                  sk="<instance id>"       an upload instance sending ChartMogul requests now, and
                                  the most connections it may hold (`expires_at`, TTL; `connections`;
                                  sinks/chartmogul/limiter.py UploadPeers)
  pk="run#last"                   sk="<mode>"             the export's last run of this mode (incremental, backfill,
                                  customer, realtime): `run` JSON with its times, outcome and counts
                                  (sources/stripe/run.py RunRecord), for `cmsync status`
Callers build keys with `key()` and never spell the separators themselves.
"""

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError


def key(*parts: str) -> str:
    return "#".join(parts)


# BatchGetItem reads up to 100 items a request and may leave some unprocessed (a response holds at most 16 MB, or
# the table is throttled): https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
BATCH_GET_KEYS = 100
BATCH_GET_ROUNDS = 8  # requests for one group of keys before the rest is read one item at a time
# TransactWriteItems: up to 100 actions, all written or none; a cancelled transaction says, action by action, why
# (`CancellationReasons`: ConditionalCheckFailed, TransactionConflict, ...). Each item written costs two write units
# instead of one: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html ,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html
TRANSACT_ITEMS = 100
TRANSACT_ROUNDS = 5  # transactions for one group of items before the rest is written one item at a time
_CONFLICT_PAUSE_S = 0.02


class StateTable:
    """The state table through DynamoDB's low-level client, which threads may share.

    boto3's resources (`dynamodb.Table`) are not thread-safe and must not be shared across threads
    (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/resources.html#multithreading-or-multiprocessing-with-resources),
    while its low-level clients are (guide/clients.html, "Multithreading or multiprocessing with clients"); the upload
    works on the customers of a batch in threads side by side, all of them reading and writing here. The client is
    the resource's own (`meta.client`), which converts Python values to DynamoDB's types and back as the resource
    does, so what is stored and read back is unchanged.

        state = StateTable(boto3.resource("dynamodb"), "chartmogul-sync-state")
        state.put(key("run", "last"), "incremental", {"run": "{...}"})
    """

    def __init__(self, dynamodb_resource: Any, table_name: str) -> None:
        self._client = dynamodb_resource.meta.client
        self._name = table_name

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        found = self._client.get_item(TableName=self._name, Key=_dynamo({"pk": pk, "sk": sk}), ConsistentRead=True).get(
            "Item"
        )
        return _plain(found) if found is not None else None

    def get_many(
        self, keys: Iterable[tuple[str, str]], sleep: Callable[[float], None] = time.sleep
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The items stored under these (pk, sk) keys, read as `get` reads them (strongly consistent) but up to 100
        a request; a key with no item is absent from the answer.

        Keys DynamoDB leaves unprocessed are asked again, after a pause when a request processed none (AWS's advice
        for throttled batches: back off and retry); what is still unprocessed after BATCH_GET_ROUNDS requests is
        read one item at a time. Bounded either way.

            found = state.get_many([(key("applied", ds), "cus_1"), (key("applied", ds), "cus_2")])
        """
        wanted = list(dict.fromkeys(keys))  # BatchGetItem refuses a request that names a key twice
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            pending = [_dynamo({"pk": pk, "sk": sk}) for pk, sk in wanted[start : start + BATCH_GET_KEYS]]
            for attempt in range(BATCH_GET_ROUNDS):
                answer = self._client.batch_get_item(
                    RequestItems={self._name: {"Keys": pending, "ConsistentRead": True}}
                )
                items = answer.get("Responses", {}).get(self._name, [])
                for item in items:
                    found[(str(item["pk"]), str(item["sk"]))] = _plain(item)
                pending = answer.get("UnprocessedKeys", {}).get(self._name, {}).get("Keys", [])
                if not pending:
                    break
                if not items:
                    sleep(min(1.0, 0.05 * 2**attempt))
            for unprocessed in pending:
                item = self.get(str(unprocessed["pk"]), str(unprocessed["sk"]))
                if item is not None:
                    found[(str(unprocessed["pk"]), str(unprocessed["sk"]))] = item
        return found

    def put(self, pk: str, sk: str, attributes: Mapping[str, Any]) -> None:
        self._client.put_item(TableName=self._name, Item=_dynamo({**attributes, "pk": pk, "sk": sk}))

    def put_if_newer(self, pk: str, sk: str, version_field: str, version: str, attributes: Mapping[str, Any]) -> bool:
        """Write only if no item exists or its `version_field` is older (ISO timestamps compare as strings).

        Returns False when a newer or equal version is already stored: the caller's data is stale.
        """
        return self._conditional(
            lambda: self._client.put_item(
                TableName=self._name,
                Item=_dynamo({**attributes, "pk": pk, "sk": sk, version_field: version}),
                ConditionExpression="attribute_not_exists(pk) OR #v < :v",
                ExpressionAttributeNames={"#v": version_field},
                ExpressionAttributeValues=_dynamo({":v": version}),
            )
        )

    def put_if(
        self, pk: str, sk: str, attributes: Mapping[str, Any], condition: str, values: Mapping[str, Any]
    ) -> bool:
        """Write only if `condition` (a DynamoDB condition expression over the stored item) holds; False if not.

        >>> table.put_if("lease#ds", "cus_1", {"holder": "me"}, "attribute_not_exists(pk) OR expires_at < :now",
        ...              {":now": 1_700_000_000})
        """
        return self._conditional(
            lambda: self._client.put_item(
                TableName=self._name,
                Item=_dynamo({**attributes, "pk": pk, "sk": sk}),
                ConditionExpression=condition,
                **_condition_values(values),
            )
        )

    def delete_if(self, pk: str, sk: str, condition: str, values: Mapping[str, Any]) -> bool:
        """Delete only if `condition` holds; False if it did not (the item changed hands, or is gone)."""
        return self._conditional(
            lambda: self._client.delete_item(
                TableName=self._name,
                Key=_dynamo({"pk": pk, "sk": sk}),
                ConditionExpression=condition,
                **_condition_values(values),
            )
        )

    def put_each_if(
        self, pk: str, items: Mapping[str, Mapping[str, Any]], condition: str, values: Mapping[str, Any]
    ) -> Iterator[tuple[str, bool]]:
        """`put_if` for many items of one partition (sort key → attributes), up to 100 a request: yields (sort key,
        written) for each item, group by group as each is settled; an item whose condition fails is not written.

        Transactions, because conditional writes cannot go in a BatchWriteItem: a group's transaction is all or
        nothing, so when one condition fails the others are sent again without it (at most TRANSACT_ROUNDS
        transactions a group, then one write each). An error other than a cancellation is raised, after the
        groups before it were yielded.

            >>> dict(table.put_each_if("lease#ds", {"cus_1": {"holder": "me"}}, "attribute_not_exists(pk)", {}))
            {'cus_1': True}
        """

        def action(sk: str) -> dict[str, Any]:
            put = {"TableName": self._name, "Item": _dynamo({**items[sk], "pk": pk, "sk": sk})}
            return {"Put": {**put, "ConditionExpression": condition, **_condition_values(values)}}

        yield from self._transact_each(
            list(items), action, lambda sk: self.put_if(pk, sk, items[sk], condition, values)
        )

    def delete_each_if(
        self, pk: str, sort_keys: Iterable[str], condition: str, values: Mapping[str, Any]
    ) -> Iterator[tuple[str, bool]]:
        """`delete_if` for many items of one partition, up to 100 a request, as `put_each_if` writes them."""

        def action(sk: str) -> dict[str, Any]:
            delete = {"TableName": self._name, "Key": _dynamo({"pk": pk, "sk": sk})}
            return {"Delete": {**delete, "ConditionExpression": condition, **_condition_values(values)}}

        yield from self._transact_each(
            list(dict.fromkeys(sort_keys)), action, lambda sk: self.delete_if(pk, sk, condition, values)
        )

    def _transact_each(
        self, sort_keys: list[str], action: Callable[[str], dict[str, Any]], one: Callable[[str], bool]
    ) -> Iterator[tuple[str, bool]]:
        for start in range(0, len(sort_keys), TRANSACT_ITEMS):
            pending = sort_keys[start : start + TRANSACT_ITEMS]
            for attempt in range(TRANSACT_ROUNDS):
                reasons = self._transact([action(sk) for sk in pending])
                if reasons is None:  # written, all of them
                    yield from ((sk, True) for sk in pending)
                    pending = []
                    break
                if len(reasons) != len(pending):  # no reason per action: nothing to go by but one write each
                    break
                refused = {sk for sk, code in zip(pending, reasons, strict=True) if code == "ConditionalCheckFailed"}
                yield from ((sk, False) for sk in pending if sk in refused)
                pending = [sk for sk in pending if sk not in refused]
                if not pending:
                    break
                if not refused:  # a conflict with another write of one of these items, or throttling: again
                    time.sleep(_CONFLICT_PAUSE_S * (2**attempt) * random.uniform(0.5, 1.0))
            yield from ((sk, one(sk)) for sk in pending)

    def _transact(self, actions: list[dict[str, Any]]) -> list[str] | None:
        """Run one transaction: None when it was written, else each action's cancellation code ("None": its
        condition held; an empty list when DynamoDB gave no reasons)."""
        try:
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            return [str(reason.get("Code")) for reason in error.response.get("CancellationReasons", [])]
        return None

    @staticmethod
    def _conditional(write: Any) -> bool:
        try:
            write()
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[dict[str, Any]]:
        condition, values = "pk = :pk", {":pk": pk}
        if sk_prefix:
            condition, values = condition + " AND begins_with(sk, :prefix)", {**values, ":prefix": sk_prefix}
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": _dynamo(values),
            "ConsistentRead": True,
        }
        yield from self._pages(self._client.query, kwargs)

    def delete(self, pk: str, sk: str) -> None:
        self._client.delete_item(TableName=self._name, Key=_dynamo({"pk": pk, "sk": sk}))

    def scan(self, pk_prefix: str, max_pages: int = 100_000) -> Iterator[dict[str, Any]]:
        """Every item whose partition key starts with `pk_prefix`, across partitions (a whole-table scan: for the
        operator's rare reads, e.g. `cmsync status` listing backfill checkpoints; bounded by `max_pages`)."""
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": _dynamo({":prefix": pk_prefix}),
        }
        yield from self._pages(self._client.scan, kwargs, max_pages)

    @staticmethod
    def _pages(read: Any, kwargs: dict[str, Any], max_pages: int = 100_000) -> Iterator[dict[str, Any]]:
        """The items of a query or scan, page after page (bounded: at most `max_pages` requests)."""
        for _page in range(max_pages):
            page = read(**kwargs)
            yield from (_plain(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs = {**kwargs, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def _dynamo(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # The resource API refuses floats; numbers we store are counts and epoch seconds.
    return {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in attributes.items()}


def _condition_values(values: Mapping[str, Any]) -> dict[str, Any]:
    # DynamoDB refuses an empty ExpressionAttributeValues: a condition without placeholders sends none.
    return {"ExpressionAttributeValues": _dynamo(values)} if values else {}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
        for k, v in item.items()
    }
