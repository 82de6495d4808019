"""Users, teams, groups, relay tokens, prices, the ledger and usage."""
