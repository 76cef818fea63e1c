"""The analytics dashboard after a demo-sized run: ``evledger api`` serves it, its figures tie to
the finance queries and the tables the CLI reads, each network sees only its own, and in
headless Chromium (Debian's chromium and chromium-driver, driven by Selenium) every chart
renders with the run's numbers; the screenshot lands in docs/dashboard.png."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import analytics, finance, keys_store, postgres
from tests.e2e.conftest import DemoBook, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHARTS = ("chart-revenue-hour", "chart-revenue-station", "chart-auth", "chart-sessions",
          "chart-holds", "chart-fraud", "chart-rate", "chart-rejections")  # fmt: skip


@dataclass
class Served:
    base: str
    url: str
    network: str
    keys: dict[str, str]

    def data(self, key: str | None, **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{self.base}/dashboard/data", params=params, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def served(demo_book: DemoBook, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``evledger api`` over the demo's book, refreshing the rollups every second, with keys
    for the demo network (admin, finance:read, publish) and for another network."""
    url, network = demo_book.run.database_url, demo_book.network
    keys = {}
    with postgres.connect(url, autocommit=True) as conn:
        for name, of, scopes in (
            ("admin", network, ["finance:read", "admin"]),
            ("reader", network, ["finance:read"]),
            ("publisher", network, ["publish"]),
            ("stranger", "another-network", ["finance:read", "admin"]),
        ):
            keys[name] = keys_store.create(conn, of, scopes, actor="test", name=name)[0].token
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "api", "--port", str(port),
         "--refresh-seconds", "1"],
        cwd=ROOT,
        env={**os.environ, "EVLEDGER_DATABASE_URL": url},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", url, network, keys)
    try:
        deadline = time.monotonic() + 60
        while True:  # up, and the rollups refreshed once since the run
            try:
                answer = served.data(keys["reader"])
                if answer.status_code == 200 and answer.json()["rollups_refreshed_at"]:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        yield served
    finally:
        process.terminate()
        process.wait(timeout=20)


def everything() -> dict[str, str]:
    """A range holding the whole run (the demo's sessions lie in the last days)."""
    now = datetime.now(UTC)
    return {"since": (now - timedelta(days=30)).isoformat(),
            "until": (now + timedelta(hours=2)).isoformat()}  # fmt: skip


def one(url: str, query: str, *args: Any) -> Any:
    with postgres.connect(url, autocommit=True) as conn:
        row = conn.execute(query.encode(), args).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def test_the_figures_tie_to_the_finance_queries_and_the_tables(served: Served) -> None:
    answer = served.data(served.keys["admin"], **everything())
    assert answer.status_code == 200, answer.text
    d = answer.json()
    assert d["network"] == served.network and d["currency"] == "EUR"
    with postgres.connect(served.url, autocommit=True) as conn:
        revenue = list(finance.revenue(conn, by=finance.RevenueBy.STATION, network=served.network))
    by_station = {r.key: r.net_revenue for r in revenue if r.currency == "EUR"}
    assert d["totals"]["net_revenue"] == sum(by_station.values()) > 0
    assert {r["station"]: r["net_revenue"] for r in d["revenue_by_station"]} == by_station
    assert sum(r["net_revenue"] for r in d["revenue_by_hour"]) == d["totals"]["net_revenue"]
    vat = one(served.url, "SELECT -sum(amount_minor) FROM vat_postings WHERE operator = %s",
              served.network)  # fmt: skip
    assert d["totals"]["vat"] == vat > 0

    billed, value = one(
        served.url,
        "SELECT count(*), sum(c.total_incl_vat) FROM charging_sessions s JOIN session_cdrs c"
        " USING (session_id) WHERE s.network_id = %s AND s.status = 'billed'"
        " AND c.kind = 'issued' AND c.cdr_id NOT IN (SELECT credited_cdr_id FROM session_cdrs"
        " WHERE credited_cdr_id IS NOT NULL)",
        served.network,
    )
    assert (d["sessions"]["sessions"], d["sessions"]["value_incl_vat"]) == (billed, value)
    assert d["sessions"]["average_value_incl_vat"] == round(value / billed)

    ok, failed = one(
        served.url,
        "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status ="
        " 'failed') FROM provider_attempts WHERE action = 'authorize'"
        " AND request #>> '{envelope,network_id}' = %s",  # the sessions' and the attacks'
        served.network,
    )
    assert sum(a["succeeded"] for a in d["authorizations"]) == ok > 0
    assert sum(a["failed"] for a in d["authorizations"]) == failed

    holds = one(served.url, "SELECT count(*) FROM open_authorizations WHERE network_id = %s",
                served.network)  # fmt: skip
    assert d["open_holds"]["holds"] == holds
    alerts = one(served.url, "SELECT count(*) FROM fraud_alerts WHERE network_id = %s",
                 served.network)  # fmt: skip
    assert d["fraud"]["alerts"] == alerts > 0  # the demo's attacks
    with postgres.connect(served.url, autocommit=True) as conn:
        groups = {g.consumer_group: g.consumed for g in finance.counts(conn, None)}
    ops = d["operations"]
    assert {g["consumer_group"]: g["consumed"] for g in ops["groups"]} == groups
    assert {"UNDECODABLE", "UNKNOWN_SCHEMA_ID"} <= {r["reason_code"] for r in
                                                    ops["rejections_by_reason"]}  # fmt: skip

    station = max(by_station, key=lambda s: by_station[s])
    one_station = served.data(served.keys["admin"], station=station, **everything()).json()
    assert one_station["totals"]["net_revenue"] == by_station[station]
    assert [r["station"] for r in one_station["revenue_by_station"]] == [station]


def test_each_key_sees_its_network_only_and_needs_its_scope(served: Served) -> None:
    stranger = served.data(served.keys["stranger"], **everything()).json()
    assert stranger["network"] == "another-network"
    assert stranger["totals"]["net_revenue"] == 0 and stranger["stations"] == []
    assert stranger["sessions"]["sessions"] == 0 and stranger["authorizations"] == []
    assert stranger["fraud"]["alerts"] == 0 and stranger["open_holds"]["holds"] == 0
    reader = served.data(served.keys["reader"], **everything()).json()
    assert reader["operations"] is None  # pipeline-wide figures: the admin scope only
    assert served.data(served.keys["publisher"]).status_code == 403
    assert served.data(None).status_code == 401
    bad = served.data(served.keys["reader"], since="2026-01-01T00:00:00")
    assert bad.status_code == 422 and "time zone" in bad.json()["detail"]
    backwards = served.data(served.keys["reader"], since="2026-02-01T00:00:00Z",
                            until="2026-01-01T00:00:00Z")  # fmt: skip
    assert backwards.status_code == 422 and backwards.json()["code"] == "VALIDATION_ERROR"


def test_a_second_refresher_steps_aside_while_one_runs(served: Served) -> None:
    with postgres.connect(served.url, autocommit=True) as holder, \
            postgres.connect(served.url, autocommit=True) as other:  # fmt: skip
        holder.execute("SELECT pg_advisory_lock(%s)", (analytics._LOCK_KEY,))
        try:
            assert analytics.refresh_rollups(other) is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (analytics._LOCK_KEY,))
        took = analytics.refresh_rollups(other)
    assert took is not None and took >= 0


def browser() -> Any:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (.ci/run does)")
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium "
                    "chromium-driver")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # This machine's network is closed: no background calls to Google's hosts.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,2100"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait(driver: Any, script: str, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    error = driver.execute_script("return document.getElementById('error').textContent")
    raise AssertionError(f"{what} within {seconds}s (page error: {error!r})")


def renders(driver: Any) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.renders || 0)"))


def test_the_charts_render_the_runs_numbers_in_chromium(served: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with postgres.connect(served.url, autocommit=True) as conn:
        rows = finance.revenue(conn, by=finance.RevenueBy.STATION, network=served.network)
    revenue = [r for r in rows if r.currency == "EUR"]
    net = sum(r.net_revenue for r in revenue)
    driver = browser()
    try:
        driver.get(f"{served.base}/dashboard")
        driver.find_element(By.ID, "key").send_keys(served.keys["admin"])
        driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait(driver, "return Number(document.body.dataset.renders || 0) >= 1", "a first render")
        for chart in CHARTS:
            drawn = driver.execute_script(
                f"const d = document.getElementById('{chart}');"
                " return Number(d.dataset.rendered || 0) > 0 && d.querySelectorAll('.main-svg')"
                ".length > 0 && d.offsetHeight > 100"
            )
            assert drawn, f"{chart} did not render"
        # The default range (7 days) holds the whole run: the bars add up to the book.
        sums = driver.execute_script(
            "return document.getElementById('chart-revenue-hour').data"
            ".map(t => t.y.reduce((a, b) => a + b, 0))"
        )
        assert round(sums[0] * 100) == net > 0
        bars = driver.execute_script(
            "return document.querySelectorAll('#chart-revenue-hour .point').length"
        )
        assert bars > 0
        shown = driver.find_element(By.ID, "kpi-net").text
        assert shown == f"€{net / 100:,.2f}", shown
        billed = one(served.url, "SELECT count(*) FROM charging_sessions WHERE network_id = %s"
                     " AND status = 'billed'", served.network)  # fmt: skip
        assert driver.find_element(By.ID, "kpi-sessions").text == f"{billed:,}"
        alerts = driver.find_element(By.ID, "kpi-fraud").text
        assert int(alerts) > 0
        # A second poll draws the events/s chart (a rate needs two readings) before the picture.
        wait(driver, "return Number(document.body.dataset.renders || 0) >= 2", "a second render")
        driver.save_screenshot(str(SCREENSHOT))

        # One station: the page asks again and the charts follow the filter.
        top = max(revenue, key=lambda r: r.net_revenue)
        before = renders(driver)
        Select(driver.find_element(By.ID, "station")).select_by_value(top.key)
        wait(driver, f"return Number(document.body.dataset.renders || 0) > {before}",
             "a render for one station")  # fmt: skip
        one_bar = "document.getElementById('chart-revenue-station').data[0]"
        wait(driver, f"return {one_bar}.x.length === 1", "the one station's bar")
        station, amount = driver.execute_script(f"return [{one_bar}.x[0], {one_bar}.y[0]]")
        assert (station, round(amount * 100)) == (top.key, top.net_revenue)
    finally:
        driver.quit()


def test_fifty_viewers_at_once_are_all_answered(served: Served) -> None:
    """More requests at once than the API's threads: each waits its turn for one of the pool's
    connections on the event loop (before, the threads all waited for connections held by
    requests that had no thread left to finish on, and after the pool's 10 s every one of them
    answered 503 DATABASE_UNAVAILABLE)."""

    async def viewers() -> list[int]:
        headers = {"Authorization": f"Bearer {served.keys['reader']}"}
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(
            base_url=served.base, headers=headers, timeout=60, limits=limits
        ) as client:
            answers = await asyncio.gather(
                *(client.get("/dashboard/data", params=everything()) for _ in range(60))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(viewers()) == [200] * 60
