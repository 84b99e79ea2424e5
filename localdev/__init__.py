"""The local world: everything that lets the product run on one machine without a cloud account.

- `aws/`: the local AWS runtime (the template's stack in moto, its functions run like Lambda);
- `chartmogul_emulator/`, `stripe_emulator/` on `emulator_kit/`: the two APIs, over real HTTP on loopback;
- `scenarios/`: generated Stripe accounts with their ground truth;
- `pipeline.py`, `demo.py`, `local_sync.py`, `audit.py`: the whole pipeline on those parts (`cmsync demo`,
  `cmsync sync --local`), audited by the product's own audit.
"""
