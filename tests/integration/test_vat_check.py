"""`evledger vat-check` against a demo book: a tariff's 19 % priced at stations in France and
the Netherlands is listed line by line, German sessions pass."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from typer.testing import CliRunner

from connectors import postgres
from entrypoints.bootstrap import App
from entrypoints.cli import app as cli


def test_cdrs_taxed_at_another_rate_than_their_country_s_are_listed(app: App) -> None:
    name = f"vat_check_{datetime.now(UTC):%H%M%S%f}"
    url = postgres.create_database(app.database_url, name)
    try:
        with psycopg.connect(url) as conn:
            for sid, country in (("S-de", "DE"), ("S-fr", "FR"), ("S-nl", "NL")):
                conn.execute(
                    "INSERT INTO charging_sessions (session_id, network_id, started_event_id,"
                    " station_id, evse_id, connector_id, transaction_id, country, time_zone,"
                    " tariff_id, started_at, stopped_at, status) VALUES (%s, 'net', 'e', 'ST',"
                    " 'E', '1', 'TX', %s, 'Europe/Berlin', 'T', %s, %s, 'billed')",
                    (sid, country, datetime(2026, 11, 20, tzinfo=UTC),
                     datetime(2026, 11, 20, 1, tzinfo=UTC)),
                )  # fmt: skip
                conn.execute(
                    "INSERT INTO session_cdrs (cdr_id, session_id, kind, event_id, tariff_id,"
                    " tariff_version, currency, total_excl_vat, total_incl_vat, lines,"
                    " occurred_at) VALUES (%s, %s, 'issued', 'e', 'T', 1, 'EUR', 1000, 1190, %s,"
                    " %s)",
                    (f"cdr-{country}", sid,
                     '[{"dimension": "ENERGY", "amount_excl_vat": 1000, "vat_amount": 190,'
                     ' "vat_rate": "19", "quantity": "4"}]', datetime(2026, 11, 20, 1, tzinfo=UTC)),
                )  # fmt: skip
            conn.commit()
        result = CliRunner().invoke(cli, ["vat-check"], env={"EVLEDGER_DATABASE_URL": url})
        assert result.exit_code == 1, result.output
        assert "cdr-FR" in result.output and "cdr-NL" in result.output
        assert "cdr-DE" not in result.output
        assert "2 lines of 3 CDRs taxed at another rate" in result.output
    finally:
        postgres.drop_database(app.database_url, name)
