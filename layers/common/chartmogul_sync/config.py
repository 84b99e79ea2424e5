"""One settings object for every function and command, read from the environment (template.yaml sets it).

Secrets are not settings: only the *names* of the Secrets Manager secrets are, and the keys are fetched at run
time through Powertools Parameters (cached), never logged.
"""

from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# stripe==16.1.0 pins this API version (docs/sources.md#stripe-versions); we pin it again explicitly
# so that a client upgrade never silently changes the shapes the transform reads.
STRIPE_API_VERSION = "2026-10-28.endive"

CHARTMOGUL_API_URL = "https://api.chartmogul.com/v1"
# Stripe's global rate limits (docs.stripe.com/rate-limits, "Rate limiters").
STRIPE_LIVE_REQUESTS_PER_SECOND = 100.0
STRIPE_TEST_REQUESTS_PER_SECOND = 25.0
# Stripe's default limit for one endpoint (one named operation, such as GET /v1/invoices, whatever the ids in its
# path), counted against the global limit too (https://docs.stripe.com/rate-limits, docs/sources.md
# #stripe-rate-limits). A backfill lists one endpoint at a time, several pages side by side.
STRIPE_ENDPOINT_REQUESTS_PER_SECOND = 25.0


class UploadMode(StrEnum):
    API = "api"  # Import API calls per object (incremental syncs)
    BULK = "bulk"  # json_imports, up to 5 MB per request (backfills)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    state_table: str = Field(default="chartmogul-sync-state", description="DynamoDB table for all state")
    staging_bucket: str = Field(default="chartmogul-sync-staging", description="S3: staged pages, claim checks")
    raw_queue_url: str = ""
    upload_queue_url: str = ""
    bad_records_queue_url: str = ""
    # Read by `cmsync dlq` and the audit (which names the customers whose records wait there); no function writes
    # to them. `--stack` finds them through CloudFormation.
    export_failed_queue_url: str = ""
    schedule_dead_letter_queue_url: str = ""
    # The scheduled audit's on-failure destination (template.yaml AuditFailedQueue): `cmsync status`/`check` count
    # it, `cmsync dlq list|replay audit-failed` show and re-invoke its failed audits (with audit_function_name).
    audit_failed_queue_url: str = ""
    # The near-real-time path's queue (template.yaml StripeEventsQueue, only with StripePartnerEventSourceName): its
    # DLQ is found through its redrive policy, and `cmsync dlq replay stripe-events-dlq` sends events back to it.
    stripe_events_queue_url: str = ""
    export_function_name: str = ""
    audit_function_name: str = ""

    stripe_secret_name: str = "chartmogul-sync/stripe-api-key"
    chartmogul_secret_name: str = "chartmogul-sync/chartmogul-api-key"
    # Where the clients point. Production leaves both unset; the local runtime points them at the emulators.
    stripe_api_base: str | None = None
    chartmogul_api_url: str = CHARTMOGUL_API_URL

    chartmogul_data_source_name: str = "chartmogul-sync (Stripe)"
    upload_mode: UploadMode = UploadMode.API
    # A backfill sends each customer's record alone as soon as its page of customers is listed, so ChartMogul's
    # customers are created while the export lists their history (docs/architecture.md "Customer heads"); off, each
    # customer is created with its first full bundle, after the whole history is listed.
    backfill_customer_heads: bool = True
    # Path of the mapping config YAML (see chartmogul_sync.transform.config); unset or empty = the documented
    # defaults (the template passes "" when its MappingConfigPath parameter is left empty).
    mapping_config_path: str | None = None

    # Upload limits, shared by every concurrent upload (docs/sources.md#cm-rate-limits: 40 requests/s and 20 connections
    # per account).
    chartmogul_requests_per_second: float = Field(default=40.0, gt=0)
    chartmogul_max_connections: int = Field(default=20, gt=0)
    # The upload function's ScalingConfig.MaximumConcurrency (template parameter UploadMaximumConcurrency): each
    # concurrent instance takes an equal share of the two limits above (sinks/chartmogul/limiter.py).
    upload_max_concurrency: int = Field(default=5, ge=1)
    # How the instances split ChartMogul's rate (sinks/chartmogul/limiter.py): `busy`, shared among the instances
    # sending requests now (a lone instance uses all of it; one that starts sending waits a second or so until the
    # others have made room), with a heartbeat a second in the state table; `fixed`, each 1 / upload_max_concurrency
    # of it, no coordination, the rate unused while an instance waits for a bulk import or has no work.
    chartmogul_rate_sharing: Literal["fixed", "busy"] = "busy"
    # Stripe's rate limit belongs to the account and is shared with the user's own application (Stripe docs,
    # "Rate limits", docs.stripe.com/rate-limits: 100 read requests/s in live mode, 25 in test mode). The sync uses at
    # most `stripe_rate_limit_share` of it, all its functions together. Three functions read Stripe at the same time:
    # the export function (incremental, backfill, one customer; reserved concurrency 1, template.yaml: two runs would
    # move the same cursor or checkpoint), the daily Audit function (reserved concurrency 1, beside whatever export
    # runs then) and, with the near-real-time path, the Stripe events function (up to its trigger's
    # MaximumConcurrency invocations, beside a running export). `stripe_realtime_share` of the sync's share is the
    # Stripe events function's, split equally between its `stripe_events_max_concurrency` invocations;
    # `stripe_audit_share` is the Audit function's; the rest is the export function's, split between its
    # `export_max_concurrency` invocations. So everything at once stays within `stripe_rate_limit_share`
    # (`stripe_requests_per_second`).
    stripe_rate_limit_share: float = Field(default=0.5, gt=0, le=1)
    # None: Stripe's documented limit for the key's mode (a live key 100/s, a test key 25/s).
    stripe_rate_limit_per_second: float | None = Field(default=None, gt=0)
    # Stripe's limit on one endpoint, counted against the global one too (docs.stripe.com/rate-limits: 25/s by
    # default; Stripe raises it for an account on request).
    stripe_endpoint_rate_limit_per_second: float = Field(default=STRIPE_ENDPOINT_REQUESTS_PER_SECOND, gt=0)
    export_max_concurrency: int = Field(default=1, ge=1)
    # 0 without the near-real-time path (the export takes the whole share); the template sets it on both functions
    # when it deploys the Stripe events function.
    stripe_realtime_share: float = Field(default=0.0, ge=0, lt=1)
    # The Audit function's part (template.yaml sets it on the Audit and the export function, a test checks they
    # agree); 0 where no audit function runs (the export takes it). The audit reads Stripe's global lists one page
    # after another for minutes a day: a small part is enough for a few thousand customers, and each point more is
    # taken from the export all day, so raise it only if the audit runs out of time.
    stripe_audit_share: float = Field(default=0.0, ge=0, lt=1)
    # The Stripe events trigger's ScalingConfig.MaximumConcurrency (template.yaml StripeEventsTrigger; a test checks).
    stripe_events_max_concurrency: int = Field(default=2, ge=1)
    # Timeouts for outside calls: (connect, read) seconds. Neither client has a sane default
    # (docs/sources.md#cm-client-config).
    http_connect_timeout_s: float = Field(default=3.05, gt=0)
    http_read_timeout_s: float = Field(default=30.0, gt=0)

    # The audit (template parameter AuditExchangeRates): units of the account currency per unit of each other
    # currency, as JSON; empty = figures in other currencies are not compared (chartmogul_sync.audit).
    audit_exchange_rates: str | None = None
    account_currency: str = "USD"

    def stripe_requests_per_second(self, api_key: str, *, realtime: bool = False, audit: bool = False) -> float:
        """One invocation's share of Stripe's rate limit: of the Stripe events function (`realtime`), of the Audit
        function (`audit`) or of the export function (see `stripe_rate_limit_share`). All invocations of the three at
        once add up to the share."""
        if realtime and audit:
            raise ValueError("one function's share at a time: realtime or audit")
        limit = self.stripe_rate_limit_per_second
        if limit is None:
            live = api_key.startswith(("sk_live_", "rk_live_"))
            limit = STRIPE_LIVE_REQUESTS_PER_SECOND if live else STRIPE_TEST_REQUESTS_PER_SECOND
        sync_share = limit * self.stripe_rate_limit_share
        if realtime:
            if self.stripe_realtime_share == 0:
                raise ValueError(
                    "stripe_realtime_share is 0: no part of the Stripe budget is the Stripe events function's "
                    "(set STRIPE_REALTIME_SHARE, as template.yaml does with the near-real-time path)"
                )
            return sync_share * self.stripe_realtime_share / self.stripe_events_max_concurrency
        if audit:
            if self.stripe_audit_share == 0:
                raise ValueError(
                    "stripe_audit_share is 0: no part of the Stripe budget is the Audit function's "
                    "(set STRIPE_AUDIT_SHARE, as template.yaml does)"
                )
            return sync_share * self.stripe_audit_share
        return sync_share * self._export_part / self.export_max_concurrency

    def stripe_endpoint_requests_per_second(self) -> float:
        """One export invocation's part of one Stripe endpoint's limit (`stripe_endpoint_rate_limit_per_second`): what a
        backfill asks of each list it reads side by side. The same part as of the global limit, since the other
        functions may read the same list meanwhile; the user's own application rarely pages through lists, so
        `stripe_rate_limit_share` is not taken from it."""
        return self.stripe_endpoint_rate_limit_per_second * self._export_part / self.export_max_concurrency

    @property
    def _export_part(self) -> float:
        """The export function's part of the sync's Stripe budget: what the other two functions leave."""
        return 1 - self.stripe_realtime_share - self.stripe_audit_share

    @model_validator(mode="after")
    def _the_export_keeps_a_part(self) -> "Settings":
        if self.stripe_realtime_share + self.stripe_audit_share >= 1:
            raise ValueError(
                f"STRIPE_REALTIME_SHARE ({self.stripe_realtime_share}) and STRIPE_AUDIT_SHARE "
                f"({self.stripe_audit_share}) leave the export function no part of the Stripe budget: together they "
                "must stay below 1"
            )
        return self

    @field_validator("mapping_config_path", "audit_exchange_rates")
    @classmethod
    def _empty_means_unset(cls, value: str | None) -> str | None:
        return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once (environment variables are fixed for a Lambda's life)."""
    return Settings()
