"""End-to-end fixtures: a generated account covering every scenario, small enough for the suite's time budget."""

import pytest

from localdev.scenarios import PROFILES, Account, generate_account

# Every profile once, plus a few drawn by weight; a year of history (>= the generator's MIN_MONTHS).
E2E_CUSTOMERS = len(PROFILES) + 6
E2E_MONTHS = 12


@pytest.fixture
def account() -> Account:
    return generate_account(customers=E2E_CUSTOMERS, months=E2E_MONTHS, seed=11)
