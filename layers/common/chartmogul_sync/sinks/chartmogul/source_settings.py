"""Settings of the data source that change what our numbers mean: read once per process, warned about when on.

ChartMogul's auto-churn setting ("auto-churn subscriptions after N days past due or missing a renewal invoice")
is reported by `GET /data_sources/{uuid}?with_auto_churn_subscription_setting=true`, and a source created through
the API in 2025 reported it on (`{"enabled": true, "interval": 30}`, chartmogul/chartmogul-ruby
spec/fixtures/vcr_cassettes/ChartMogul_DataSource/API_Interactions/correctly_interracts_with_the_API.yml). Our
mapping's "a past-due subscription keeps its MRR until cancelled" (docs/mapping-decisions.md, `unpaid`) holds
only with it off: with it on, ChartMogul churns such customers itself and the ground truth no longer matches. It
is an account setting the Import API cannot change, so the uploader says so in the log (a warning, once per
process and data source) and goes on; the README says how to switch it off.
"""

import threading

import chartmogul
from aws_lambda_powertools import Logger

from .client import ChartMogulApi, ChartMogulError, TimeBudget

logger = Logger(child=True)

_checked: set[str] = set()
_lock = threading.Lock()


def warn_if_auto_churn(api: ChartMogulApi, data_source_uuid: str, budget: TimeBudget) -> bool | None:
    """Read the data source's auto-churn setting once per process; True (and a warning logged) when it is on.

    None when it was read before in this process, or could not be read now (then it is read again next time:
    a passing failure must neither fail the upload nor hide the warning for good).
    """
    with _lock:
        if data_source_uuid in _checked:
            return None
        _checked.add(data_source_uuid)
    try:
        source = api.call(
            "read the data source's auto-churn setting",
            lambda cfg: chartmogul.DataSource.retrieve(
                cfg, uuid=data_source_uuid, with_auto_churn_subscription_setting=True
            ).get(),
            budget,
        )
    except ChartMogulError as error:
        with _lock:
            _checked.discard(data_source_uuid)
        logger.info("could not read the data source's auto-churn setting", extra={"error": str(error)})
        return None
    setting = getattr(source, "auto_churn_subscription_setting", None)
    enabled = bool(getattr(setting, "enabled", False))
    if enabled:
        logger.warning(
            "ChartMogul auto-churn is on for this data source: it churns subscriptions past due or without a "
            "renewal invoice for the given days, while the mapping keeps past-due MRR until cancelled "
            "(docs/mapping-decisions.md); switch it off in ChartMogul's data source settings for matching numbers",
            extra={"data_source_uuid": data_source_uuid, "interval_days": getattr(setting, "interval", None)},
        )
    return enabled
