"""Deterministic generated Stripe accounts with ChartMogul ground truth (see generator.py)."""

from localdev.scenarios.generator import DEFAULT_NOW, Account, AccountSpec, generate_account
from localdev.scenarios.profiles import PROFILES

__all__ = ["DEFAULT_NOW", "PROFILES", "Account", "AccountSpec", "generate_account"]
