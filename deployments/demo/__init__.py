"""`nova demo seed`: a synthetic community made through Nova's public API, with visits to
the ranked feed whose engagement follows a hidden preference model, so that a model trained
on the logged impressions has something to learn.

`plan` draws the community from a seed; `preferences` is the hidden model; `seeder` makes
it over HTTP (`client` keeps to the rate limits); `guard` finds accounts a seed did not make.
"""

from deployments.demo.client import Budgets, SeedError
from deployments.demo.guard import real_accounts
from deployments.demo.plan import EMAIL_DOMAIN, USERNAME_PREFIX, Plan, make_plan
from deployments.demo.preferences import Weights, World
from deployments.demo.seeder import DEMO_PASSWORD, SeedOptions, planned_steps, seed
from deployments.demo.tally import Tally

__all__ = [
    "DEMO_PASSWORD",
    "EMAIL_DOMAIN",
    "USERNAME_PREFIX",
    "Budgets",
    "Plan",
    "SeedError",
    "SeedOptions",
    "Tally",
    "Weights",
    "World",
    "make_plan",
    "planned_steps",
    "real_accounts",
    "seed",
]
