"""The operators' admin for users, teams, tokens, prices, the ledger, usage,
redemption codes and reconciliation reports: one module per model family.

Access follows ``User.role``, never Django's model permissions: operators see
everything; a team admin sees only their own team's users, tokens and usage;
members are not staff and cannot log in. Secrets (relay keys, access tokens,
their hashes, password hashes) are never rendered.
"""

from billing.admin import prices, reconcile, redemption, tokens, usage, users  # noqa: F401 - registers the pages
