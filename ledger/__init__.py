"""evledger's pure domain: money, accounts, postings, tariffs and rules.

Nothing in this package imports Kafka, a database driver or an HTTP client.
"""
