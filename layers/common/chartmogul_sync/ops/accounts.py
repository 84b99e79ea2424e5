"""The user's own accounts, for the commands that run on their machine (`cmsync check`, `audit`, …).

Keys come from `STRIPE_API_KEY` and `CHARTMOGUL_API_KEY`, or with `--stack NAME` from the deployed stack's Secrets
Manager secrets; `STRIPE_API_BASE` and `CHARTMOGUL_API_URL` point the clients elsewhere (the emulators). Keys are
held here and handed to the clients; nothing prints them (`masked` shows a key's shape only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..sinks.chartmogul.client import ChartMogulApi
from ..sinks.chartmogul.limiter import ChartMogulLimiter
from ..sources.stripe.client import StripeApi, TimeBudget, make_stripe_client

# Long enough for an audit of a large account; each request still has the settings' timeouts.
COMMAND_BUDGET_S = 6 * 3600


class AccountsError(ValueError):
    """A key or a stack that cannot be found: the command stops with this one line."""


def masked(key: str) -> str:
    """A key's prefix and length, never its secret part (`sk_test_…(32 chars)`)."""
    prefix = key.split("_")[0] + "_" + key.split("_")[1] + "_" if key.count("_") >= 2 else ""
    return f"{prefix}…({len(key)} chars)"


@dataclass(frozen=True)
class Accounts:
    settings: Settings
    stripe_key: str
    chartmogul_key: str

    def __repr__(self) -> str:  # never the keys
        return f"Accounts(stripe={masked(self.stripe_key)}, chartmogul={masked(self.chartmogul_key)})"

    def stripe_api(self, budget_s: float = COMMAND_BUDGET_S) -> StripeApi:
        return StripeApi(make_stripe_client(self.settings, self.stripe_key), TimeBudget.of_seconds(budget_s))

    def chartmogul_api(self) -> ChartMogulApi:
        # One command is one client: it takes the account's whole request budget (40/s, 20 connections).
        settings = self.settings.model_copy(update={"upload_max_concurrency": 1})
        return ChartMogulApi(self.chartmogul_key, settings, ChartMogulLimiter.share_of_account(settings))


def load_accounts(stack: Any | None = None, *, stripe: bool = True) -> Accounts:
    """Keys from the environment, or from the stack's secrets (`stack`: a DeployedStack).

    `stripe=False`: a command that reads ChartMogul only; its Stripe key is not asked for (and stays empty).
    """
    settings = Settings()
    if stack is not None:
        settings = stack.settings(settings)
        stripe_key = stack.secret("StripeApiKeySecret") if stripe else ""
        chartmogul_key = stack.secret("ChartMogulApiKeySecret")
    else:
        stripe_key = os.environ.get("STRIPE_API_KEY", "").strip()
        chartmogul_key = os.environ.get("CHARTMOGUL_API_KEY", "").strip()
    needed = (("STRIPE_API_KEY", stripe_key),) if stripe else ()
    missing = [name for name, value in (*needed, ("CHARTMOGUL_API_KEY", chartmogul_key)) if not value]
    if missing:
        raise AccountsError(f"set {' and '.join(missing)} (or give --stack NAME to read the deployed stack's secrets)")
    return Accounts(settings, stripe_key, chartmogul_key)
