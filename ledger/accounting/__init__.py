"""Accounting: the chart of accounts, journal entries and their posting rules, balances."""
