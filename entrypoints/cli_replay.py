"""``evledger replay``: rebuild the ledger or the sessions projection or the settlement attempt
log from the log into another database, with progress, resumable (``entrypoints.replay``;
docs/audit.md, "Replay")."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from connectors import postgres
from connectors.settings import Settings
from entrypoints.bootstrap import bootstrap
from entrypoints.cli_ledger import console


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    into: str = typer.Option(..., help="the database to rebuild into (created if missing)"),
    from_time: datetime | None = typer.Option(
        None, help="start at the first records at or after this time (default: offset 0)"
    ),
    batch_size: int = typer.Option(5000, help="records per transaction"),
    workers: int = typer.Option(
        1,
        min=1,
        max=64,
        help="ledger only: processes sharing the partitions of payments.events (one per core;"
        " one while a refund reported at a provider is in the range)",
    ),
    projection: str = typer.Option(
        "ledger",
        help="ledger (journal, chains, balances, payment states), sessions (sessions, meter"
        " values, holds, CDRs; the meter keys copied from the live database) or settlement (the"
        " provider attempts, from instructions and their outcomes; no provider is called)",
    ),
) -> None:
    """Rebuild a projection from the log into INTO while the live database keeps serving.
    Killed, it resumes where it stopped when run again."""
    from entrypoints.replay import replay_ledger, replay_sessions, replay_settlement

    if projection not in ("ledger", "sessions", "settlement"):
        raise typer.BadParameter(f"no projection {projection!r}: ledger, sessions or settlement")
    if workers > 1 and projection != "ledger":
        raise typer.BadParameter("--workers applies to the ledger projection only")

    settings = Settings.from_env()
    app = bootstrap(settings)
    try:
        url = postgres.ensure_database(app.database_url, into)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                  console=console) as bar:  # fmt: skip
        task = bar.add_task("replay", total=None, rate="")

        def show(p: object) -> None:
            done, total, rate = p.done, p.total, p.rate  # type: ignore[attr-defined]
            per_topic = sorted(p.per_topic.items())  # type: ignore[attr-defined]
            topics = "  ".join(f"{t} {a:,}/{b:,}" for t, (a, b) in per_topic)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} ev/s",
                       description=f"replay {topics}")  # fmt: skip

        if projection == "settlement":
            result = replay_settlement(app, url, from_time=from_time, progress=show,
                                       batch_size=batch_size)  # fmt: skip
        elif projection == "sessions":
            result = replay_sessions(app, url, reference_url=app.database_url,
                                     from_time=from_time, progress=show,
                                     batch_size=batch_size)  # fmt: skip
        else:
            result = replay_ledger(app, url, from_time=from_time, progress=show,
                                   batch_size=batch_size, workers=workers)  # fmt: skip
    console.print(
        f"replayed {result.consumed:,} records into {into} in {result.seconds:.1f}s"
        f"{f' ({result.workers} workers)' if result.workers > 1 else ''}; compare "
        f"with `evledger audit compare --live URL --rebuilt {url!r} --projection {projection}`"
    )
