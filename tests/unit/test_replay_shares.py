"""How a parallel ledger replay deals out the partitions (``entrypoints.replay.share_partitions``):
each partition to one worker, payments.events round-robin, the other topics to the first worker,
and everything to one worker while refunds reported at a provider are in the range."""

from __future__ import annotations

from entrypoints.replay import share_partitions

TODO = {
    **{("payments.events", p): 0 for p in range(6)},
    **{("billing.events", p): 0 for p in range(6)},
    **{("provider.events", p): 0 for p in range(6)},
}


def test_each_partition_has_one_worker_and_payments_are_dealt_round_robin() -> None:
    shares = share_partitions(TODO, 2, refunds_reported=False)
    assert len(shares) == 2
    assert set().union(*shares) == set(TODO) and not shares[0] & shares[1]
    assert {p for t, p in shares[1] if t == "payments.events"} == {1, 3, 5}
    assert all(t == "payments.events" for t, _ in shares[1])
    assert {t for t, _ in shares[0]} == {"payments.events", "billing.events", "provider.events"}


def test_no_more_workers_than_payment_partitions() -> None:
    shares = share_partitions(TODO, 16, refunds_reported=False)
    assert len(shares) == 6 and set().union(*shares) == set(TODO)


def test_one_worker_while_refunds_reported_at_a_provider_are_in_the_range() -> None:
    assert share_partitions(TODO, 4, refunds_reported=True) == [set(TODO)]


def test_one_worker_when_asked_or_when_payments_events_has_nothing_to_replay() -> None:
    assert share_partitions(TODO, 1, refunds_reported=False) == [set(TODO)]
    others = {tp: 0 for tp in TODO if tp[0] != "payments.events"}
    assert share_partitions(others, 2, refunds_reported=False) == [set(others)]


def test_the_cli_bounds_workers_and_keeps_them_to_the_ledger() -> None:
    from typer.testing import CliRunner

    from entrypoints.cli import app as cli

    env = {"COLUMNS": "200"}
    for bad in ("0", "65", "-3", "two"):
        result = CliRunner().invoke(cli, ["replay", "--into", "x", "--workers", bad], env=env)
        assert result.exit_code == 2 and "--workers" in result.output
    result = CliRunner().invoke(cli, ["replay", "--into", "x", "--workers", "2", "--projection",
                                      "sessions"], env=env)  # fmt: skip
    assert result.exit_code == 2 and "ledger projection only" in result.output


def test_a_start_before_the_first_offset_kept_names_the_deleted_range() -> None:
    from entrypoints.replay import deleted_ranges

    origin = {("payments.events", 0): 0, ("payments.events", 1): 40, ("billing.events", 0): 7}
    kept = {("payments.events", 0): 12, ("payments.events", 1): 40, ("billing.events", 0): 0}
    assert deleted_ranges(origin, kept) == {("payments.events", 0): (0, 12)}
    assert deleted_ranges(origin, dict.fromkeys(origin, 0)) == {}
