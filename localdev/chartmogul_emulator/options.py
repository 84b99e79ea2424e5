"""Every switch of the ChartMogul emulator, with its default, in one place."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from localdev.fx import DEFAULT_RATES

DEFAULT_API_KEY = "cm_emulator_key"

InvoiceBatchMode = Literal["atomic", "partial"]


@dataclass
class EmulatorOptions:
    # --- the API -------------------------------------------------------------------------------------
    api_key: str = DEFAULT_API_KEY  # Basic-auth user name the emulator accepts (docs/sources.md#cm-transport)
    db_path: str | None = None  # SQLite file; None: in memory
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))  # → USD (localdev/fx.py)
    # docs/sources.md#cm-partial-success (unverified): is one POST of several invoices all-or-nothing? "atomic": any
    # invalid invoice rejects the request and nothing is stored (default); "partial": valid ones are stored, the
    # answer is still 422 and lists each invoice with its `errors`.
    invoice_batch_mode: InvoiceBatchMode = "atomic"
    # The emulator's "now" (customer MRR/status, "cancellation must be in the past"); None: the real clock.
    now: dt.datetime | None = None
    # docs/sources.md#cm-subscriptions: ChartMogul requires cancellation dates in the past; switch off for synthetic
    # futures.
    reject_future_cancellations: bool = True
    # A custom attribute must be created (typed) before it is updated: "Attribute must first be created using the
    # POST call" (https://dev.chartmogul.com/reference/update-custom-attributes-of-customer). What ChartMogul answers
    # otherwise is not documented: "refuse" (default) answers 422; "ignore" drops the undeclared keys silently.
    undeclared_custom_attributes: Literal["refuse", "ignore"] = "refuse"
    # The auto-churn setting a new data source reports (`with_auto_churn_subscription_setting`). Default as
    # recorded for a source created through the API in December 2025: enabled, 30 days (chartmogul/chartmogul-ruby
    # spec/fixtures/vcr_cassettes/ChartMogul_DataSource/API_Interactions/correctly_interracts_with_the_API.yml).
    # Reported only: the metrics follow docs/mapping-decisions.md's MRR rules, which assume it off (README).
    auto_churn_enabled: bool = True
    auto_churn_interval_days: int | None = 30
    # docs/sources.md#cm-bulk-import: bulk import lifecycle timing (queued → processing → completed) and the 5 MB limit.
    bulk_queued_seconds: float = 0.2
    bulk_processing_seconds: float = 0.2
    bulk_max_bytes: int = 5 * 1024 * 1024
    # --- the server (emulator_kit) -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    rate_limit: float | None = 40.0  # docs/sources.md#cm-rate-limits: 40 requests/s per account; None: off
    burst: float | None = None  # bucket size; None: one second's worth
    max_connections: int | None = 20  # docs/sources.md#cm-rate-limits: 20 parallel connections → 503
    # docs/sources.md#cm-rate-limits: production sends none; on to exercise the client's handling
    retry_after: bool = False
    faults: str = ""
    seed: int | None = None
    fault_hold_seconds: float = 30.0
    # Milliseconds added to every API request before it is answered (0: none), for benchmarks under realistic
    # round trips: ChartMogul's API is reached over the Internet, a request typically takes 100-300 ms.
    latency_ms: float = 0.0
    log_requests: bool = False

    def clock(self) -> dt.datetime:
        return self.now if self.now is not None else dt.datetime.now(dt.UTC)


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 time (`Z` accepted; no zone: UTC). Raises ValueError naming the text, e.g. for `--now`,
    `PUT /_admin/clock` and the options a child process is started with."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time, e.g. 2026-02-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
