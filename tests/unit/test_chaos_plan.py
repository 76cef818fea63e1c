"""The chaos plan: drawn from the seed alone, every kind of process struck, infrastructure
faults only where the run owns the stack."""

from __future__ import annotations

from chaos.plan import plan

PROCESSES = ["ledger-1", "ledger-2", "sessions-1", "sessions-2", "settlement-1"]


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert plan(3, 150, PROCESSES, 3, True) == plan(3, 150, PROCESSES, 3, True)
    assert plan(3, 150, PROCESSES, 3, True) != plan(4, 150, PROCESSES, 3, True)


def test_every_kind_of_process_is_killed_and_every_fault_strikes_within_the_traffic() -> None:
    for seed in range(20):
        faults = plan(seed, 60, PROCESSES, 3, True)
        killed = {f.target.rsplit("-", 1)[0] for f in faults if f.kind == "kill"}
        assert killed == {"ledger", "sessions", "settlement"}
        assert all(0 < f.at < 60 for f in faults)
        assert [f.at for f in faults] == sorted(f.at for f in faults)
        kinds = {f.kind for f in faults}
        assert {"broker", "postgres", "provider"} <= kinds
        assert {f.target for f in faults if f.kind == "provider"} == {
            "timeout_after:capture", "outage:authorize", "latency"
        }  # fmt: skip


def test_a_run_on_a_shared_stack_leaves_the_broker_and_the_database_alone() -> None:
    faults = plan(1, 60, PROCESSES, 1, False)
    assert not {f.kind for f in faults} & {"broker", "postgres"}


def test_one_broker_node_at_a_time_is_named_and_described() -> None:
    broker = next(f for f in plan(5, 150, PROCESSES, 3, True) if f.kind == "broker")
    assert broker.target in {"1", "2", "3"}
    assert broker.describe().startswith(f"kill -9 Kafka node {broker.target}")
