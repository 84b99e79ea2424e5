"""The fixed exchange-rate table the emulator's metrics and the generator's ground truth share.

ChartMogul converts each foreign-currency line at the rate of its service-period start; offline we have no
rate feed, so both sides use this one table (account currency: USD). Pass another table to the emulator at
start to model a different account.
"""

ACCOUNT_CURRENCY = "USD"

# Units of the account currency per unit of the line's currency.
DEFAULT_RATES: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.10,
    "GBP": 1.25,
    "CAD": 0.73,
    "AUD": 0.66,
}


def to_account_currency(amount_in_cents: float, currency: str, rates: dict[str, float] | None = None) -> float:
    """Convert minor units of `currency` to minor units of the account currency.

    Every currency in the table has two decimals, so minor units convert at the same rate as major ones.
    """
    table = DEFAULT_RATES if rates is None else rates
    try:
        return amount_in_cents * table[currency.upper()]
    except KeyError:
        raise ValueError(f"no exchange rate for currency {currency!r}; known: {sorted(table)}") from None


def round_cents(value: float) -> int:
    """To the closest whole cent, halves away from zero (a credit rounds like a debit).

    ChartMogul rounds each subscription line's MRR "to the closest integer value, in cents"
    (https://dev.chartmogul.com/docs/how-mrr-is-calculated-from-prorated-invoices); the emulator's metrics and the
    ground truth both round here, once per line, after converting to the account currency (where the real
    conversion sits in the formula is not documented). The tie rule is not documented either.
    """
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)
