"""The upload stage: upload-queue message bodies in, ChartMogul writes and bad records out.

Every message ends in exactly one of: applied (or found unchanged, or skipped as stale, each logged); the
bad-records queue with ChartMogul's error body (a permanent refusal, or a message that is not a valid bundle);
or raised as `RetryLater` (transient), which the handler reports as a batch item failure so that SQS redelivers it
and, after `maxReceiveCount`, moves it to the upload DLQ. Nothing is dropped silently.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from chartmogul_sync.config import Settings, UploadMode
from chartmogul_sync.models import CustomerBundle, UploadMessage
from chartmogul_sync.queues import BadRecords, ClaimCheckError, MessageSender, Stage, load_message
from chartmogul_sync.state import StateTable

from .bulk import BulkUploader, BundleOutcome
from .client import ChartMogulApi, ChartMogulError, FailureKind, TimeBudget
from .idmap import DataSources, IdMap
from .leases import CustomerLeases
from .limiter import ChartMogulLimiter, UploadPeers, map_concurrently
from .source_settings import warn_if_auto_churn
from .uploader import ApplyResult, BundleRefused, BundleUploader

logger = Logger(child=True)


class RecordOutcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    STALE = "stale"
    BAD_RECORD = "bad_record"


@dataclass
class RecordResult:
    outcome: RecordOutcome
    customer_external_id: str | None = None
    writes: dict[str, int] = field(default_factory=dict)


class RetryLater(Exception):
    """A transient failure: the record fails this time and SQS redelivers it (then the DLQ keeps it)."""


@dataclass(frozen=True)
class ParsedRecord:
    message_id: str
    body: str
    message: UploadMessage | None  # None: it was not a valid upload message and went to the bad records


class UploadService:
    def __init__(
        self,
        *,
        api: ChartMogulApi,
        state: StateTable,
        s3: Any,
        sender: MessageSender,
        settings: Settings,
    ) -> None:
        self.api = api
        self._state = state
        self._s3 = s3
        self._settings = settings
        self._bad_records = BadRecords(sender, settings.bad_records_queue_url, Stage.UPLOAD)
        self._data_sources = DataSources(state, api)
        self._uploaders: dict[str, BundleUploader] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, api_key: str, dynamodb: Any, s3: Any, sqs: Any) -> "UploadService":
        state = StateTable(dynamodb, settings.state_table)
        # `busy`: the account's rate shared among the instances busy now, counted in the state table (limiter.py).
        peers = UploadPeers(state) if settings.chartmogul_rate_sharing == "busy" else None
        api = ChartMogulApi(api_key, settings, ChartMogulLimiter.share_of_account(settings, peers))
        return cls(
            api=api,
            state=state,
            s3=s3,
            sender=MessageSender(sqs, s3, settings.staging_bucket),
            settings=settings,
        )

    def uploader(self, budget: TimeBudget) -> BundleUploader:
        """The uploader for the configured data source (ensured by name, created once)."""
        data_source_uuid = self._data_sources.ensure(self._settings.chartmogul_data_source_name, budget)
        if data_source_uuid not in self._uploaders:
            warn_if_auto_churn(self.api, data_source_uuid, budget)  # once per process (source_settings.py)
            idmap = IdMap(self._state, self.api, data_source_uuid)
            leases = CustomerLeases(self._state, data_source_uuid)
            self._uploaders[data_source_uuid] = BundleUploader(self.api, idmap, leases)
        return self._uploaders[data_source_uuid]

    # ------------------------------------------------------------ one batch

    def parse(self, message_id: str, body: str) -> ParsedRecord:
        """The upload message of a body, claim check resolved; an invalid one goes to the bad records."""
        try:
            return ParsedRecord(message_id, body, load_message(self._s3, body, UploadMessage))
        except ValidationError as error:
            problem = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
            self._bad_records.send(body, f"not a valid upload message: {where}: {problem['msg']}", field=where)
        except ClaimCheckError as error:
            if error.__cause__ is not None:
                raise RetryLater(str(error)) from error  # S3 could not be read: transient
            self._bad_records.send(body, str(error), field="claim_check")
        return ParsedRecord(message_id, body, None)

    def mode_of(self, record: ParsedRecord) -> UploadMode:
        chosen = record.message.upload_mode if record.message is not None else None
        return UploadMode(chosen) if chosen else self._settings.upload_mode

    def apply_bulk(self, records: Sequence[ParsedRecord], budget: TimeBudget) -> dict[str, BundleOutcome]:
        """Apply the bulk-mode records of a batch together; their outcomes by message id (settled by `settle`)."""
        bundles = [r for r in records if r.message is not None and r.message.payload is not None]
        if not bundles:
            return {}
        try:
            bulk = BulkUploader(self.api, self.uploader(budget))
        except ChartMogulError as error:
            return {r.message_id: error for r in bundles}
        outcomes = bulk.apply_many([_bundle(r) for r in bundles], budget)
        return {r.message_id: outcome for r, outcome in zip(bundles, outcomes, strict=True)}

    def apply_api_many(self, records: Sequence[ParsedRecord], budget: TimeBudget) -> dict[str, BundleOutcome]:
        """Apply the api-mode records of a batch side by side; their outcomes by message id (settled by `settle`).

        ChartMogul answers in 100-300 ms: one record after another, an instance would use a fraction of its share of
        the account's rate. Customers run concurrently up to the instance's share of the connections (limiter.py);
        the records of one customer stay in order, one after another, each under the customer's lease as in
        `BundleUploader.apply`. A single record is left to `settle`.
        """
        bundles = [r for r in records if r.message is not None and r.message.payload is not None]
        if len(bundles) < 2:
            return {}
        try:
            uploader = self.uploader(budget)
        except ChartMogulError as error:
            return {r.message_id: error for r in bundles}
        by_customer: dict[str, list[ParsedRecord]] = {}
        for record in bundles:
            by_customer.setdefault(_bundle(record).customer.external_id, []).append(record)

        def apply_in_order(group: list[ParsedRecord]) -> list[tuple[str, BundleOutcome]]:
            outcomes: list[tuple[str, BundleOutcome]] = []
            for record in group:
                assert record.message is not None
                # This thread's log lines name the record, as `settle`'s do (keys are per thread).
                logger.thread_safe_append_keys(
                    correlation_id=record.message.correlation_id,
                    customer_external_id=_bundle(record).customer.external_id,
                )
                try:
                    outcomes.append((record.message_id, uploader.apply(_bundle(record), budget)))
                except Exception as failure:  # only this record fails; `settle` routes it
                    outcomes.append((record.message_id, failure))
            return outcomes

        groups = map_concurrently(apply_in_order, list(by_customer.values()), self.api.limiter.max_workers)
        return dict(outcome for group in groups for outcome in group)

    def settle(self, record: ParsedRecord, budget: TimeBudget, outcome: BundleOutcome | None = None) -> RecordResult:
        """Apply one record in api mode (or take its bulk outcome) and route the result; raises RetryLater."""
        if record.message is None:
            return RecordResult(RecordOutcome.BAD_RECORD)
        bundle = _bundle(record)
        customer_id = bundle.customer.external_id
        # Thread-safe keys: the local runtime runs concurrent invocations as threads sharing one logger.
        logger.thread_safe_append_keys(correlation_id=record.message.correlation_id, customer_external_id=customer_id)
        if outcome is None:
            try:
                outcome = self.uploader(budget).apply(bundle, budget)
            except (BundleRefused, ChartMogulError) as failure:
                outcome = failure
        if isinstance(outcome, Exception) and not isinstance(outcome, BundleRefused | ChartMogulError):
            raise outcome  # this record alone failed unexpectedly (bulk mode): SQS retries it
        if isinstance(outcome, ChartMogulError) and outcome.kind in (FailureKind.PERMANENT, FailureKind.NOT_FOUND):
            outcome = BundleRefused(customer_id, outcome)
        if isinstance(outcome, BundleRefused):
            self._bad_records.send(
                record.body,
                f"ChartMogul refused {outcome.object_id or customer_id}: {outcome.error}",
                object_id=outcome.object_id,
                field=outcome.field,
                customer_external_id=customer_id,
                correlation_id=record.message.correlation_id,
                error_body=outcome.error.body or None,
            )
            return RecordResult(RecordOutcome.BAD_RECORD, customer_id)
        if isinstance(outcome, ChartMogulError):
            logger.warning("upload failed, SQS will retry", extra={"error": str(outcome)})
            raise RetryLater(str(outcome)) from outcome
        return self._applied(outcome, bundle)

    def _applied(self, result: ApplyResult, bundle: CustomerBundle) -> RecordResult:
        for note in result.notes:
            logger.info("bundle note", extra={"note": note})
        for skipped in bundle.skipped:  # skipped upstream, logged again where the customer's upload is traced
            logger.info("source object not imported", extra={"object_id": skipped.source_object_id})
        logger.info("bundle uploaded", extra={"outcome": result.outcome.value, "writes": dict(result.writes)})
        return RecordResult(RecordOutcome(result.outcome.value), result.customer_external_id, dict(result.writes))


def _bundle(record: ParsedRecord) -> CustomerBundle:
    assert record.message is not None and record.message.payload is not None  # load_message resolved the check
    return record.message.payload
