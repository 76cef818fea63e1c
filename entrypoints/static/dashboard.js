// evledger analytics: polls /dashboard/data with the API key and draws the figures with plotly.js.
// The key stays in this tab's session storage and goes out only as an Authorization header.
"use strict";

const POLL_MS = 5000;
const KEY = "evledger.key";
const rates = [];          // [{t, consumed}] from successive polls: events/s between them
let timer = null;
let last = null;

const $ = (id) => document.getElementById(id);
const CONFIG = { displayModeBar: false, responsive: true };
const LAYOUT = { margin: { l: 60, r: 20, t: 10, b: 60 }, barmode: "stack",
                 legend: { orientation: "h", y: -0.25 }, font: { size: 11 } };

function money(minor, currency) {
  return new Intl.NumberFormat("en", { style: "currency", currency })
    .format(minor / 100);
}

function units(minor) { return minor / 100; }

function kwh(wh) { return (wh / 1000).toLocaleString("en", { maximumFractionDigits: 1 }) + " kWh"; }

function age(seconds) {
  if (seconds == null) return "";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

function query() {
  const hours = Number($("range").value);
  const until = new Date();
  until.setUTCMinutes(0, 0, 0);
  until.setUTCHours(until.getUTCHours() + 1);
  const since = new Date(until.getTime() - hours * 3600 * 1000);
  const params = new URLSearchParams({ since: since.toISOString(), until: until.toISOString() });
  if ($("station").value) params.set("station", $("station").value);
  if ($("currency").value) params.set("currency", $("currency").value);
  return params;
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return;
  let response;
  try {
    response = await fetch("/dashboard/data?" + query(), { headers: { Authorization: "Bearer " + key } });
  } catch (err) {
    return fail("The API does not answer (" + err.message + "); retrying.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) stop();
    return fail(`${response.status} ${body.code || ""}: ${body.detail || response.statusText}`);
  }
  $("error").hidden = true;
  last = body;
  await render(body);
}

function fail(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function options(select, values, chosen, first) {
  const have = Array.from(select.options).map((o) => o.value);
  const want = (first ? [first] : []).concat(values);
  if (have.join("\u0000") === want.map((v) => (Array.isArray(v) ? v[0] : v)).join("\u0000")) return;
  select.replaceChildren(...want.map((v) => {
    const [value, label] = Array.isArray(v) ? v : [v, v];
    const option = new Option(label, value);
    option.selected = value === chosen;
    return option;
  }));
}

function rows(table, items, cells) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    cells(item).forEach(([text, cls]) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    });
    return tr;
  }));
}

async function draw(id, traces, layout) {
  const div = $(id);
  await Plotly.react(div, traces, Object.assign({}, LAYOUT, layout || {}), CONFIG);
  div.dataset.rendered = String(Number(div.dataset.rendered || 0) + 1);
}

async function render(d) {
  const c = d.currency;
  $("network").textContent = "network " + d.network;
  options($("station"), d.stations, d.station || "", ["", "all stations"]);
  options($("currency"), d.currencies.length ? d.currencies : [c], c, null);
  const t = d.totals;
  $("kpi-net").textContent = money(t.net_revenue, c);
  $("kpi-vat").textContent = "+ VAT " + money(t.vat, c) + " · refunds " + money(t.refunds, c);
  const s = d.sessions;
  $("kpi-sessions").textContent = s.sessions.toLocaleString("en");
  $("kpi-energy").textContent = kwh(s.energy_wh);
  $("kpi-avg-value").textContent = money(s.average_value_incl_vat, c);
  $("kpi-avg-energy").textContent = kwh(s.average_energy_wh) + " per session, incl. VAT";
  const ok = d.authorizations.reduce((n, a) => n + a.succeeded, 0);
  const bad = d.authorizations.reduce((n, a) => n + a.failed, 0);
  $("kpi-auth").textContent = ok + bad ? (100 * ok / (ok + bad)).toFixed(1) + " %" : "–";
  $("kpi-auth-n").textContent = `${ok.toLocaleString("en")} placed, ${bad.toLocaleString("en")} failed`;
  $("kpi-holds").textContent = d.open_holds.holds.toLocaleString("en");
  $("kpi-holds-amount").textContent = money(d.open_holds.amount, c) + " held";
  $("kpi-doubt").textContent = d.in_doubt.attempts.toLocaleString("en");
  $("kpi-doubt-age").textContent = d.in_doubt.attempts ? "oldest " + age(d.in_doubt.oldest_age_seconds) : "none";
  $("kpi-fraud").textContent = d.fraud.alerts.toLocaleString("en");
  $("kpi-fraud-actions").textContent = d.fraud.by_action.map((a) => `${a.alerts} ${a.action}`).join(" · ") || "none";
  const refreshed = d.rollups_refreshed_at ? new Date(d.rollups_refreshed_at) : null;
  $("rollups-age").textContent = refreshed
    ? `refreshed ${refreshed.toISOString().replace("T", " ").slice(0, 19)} UTC in ${d.rollups_refresh_ms} ms`
    : "not refreshed yet";
  $("status").textContent = "updated " + new Date(d.generated_at).toLocaleTimeString();

  const hours = d.revenue_by_hour.map((r) => r.hour);
  $("caption-revenue-hour").textContent =
    `Captured revenue by ${d.bucket} (UTC; net of refunds, with VAT)`;
  const stations = d.revenue_by_station.map((r) => r.station);
  const draws = [
    draw("chart-revenue-hour", [
      { type: "bar", name: "net revenue", x: hours, y: d.revenue_by_hour.map((r) => units(r.net_revenue)) },
      { type: "bar", name: "VAT", x: hours, y: d.revenue_by_hour.map((r) => units(r.vat)) },
    ], { yaxis: { title: { text: c } } }),
    draw("chart-revenue-station", [
      { type: "bar", name: "net revenue", x: stations, y: d.revenue_by_station.map((r) => units(r.net_revenue)) },
      { type: "bar", name: "VAT", x: stations, y: d.revenue_by_station.map((r) => units(r.vat)) },
    ], { yaxis: { title: { text: c } } }),
    draw("chart-auth", authTraces(d.authorizations),
      { barmode: "group", yaxis: { title: { text: "% placed" }, range: [0, 100] } }),
    draw("chart-sessions", [
      { type: "bar", name: "average value incl. VAT", x: s.by_station.map((r) => r.station),
        y: s.by_station.map((r) => units(r.average_value_incl_vat)) },
      { type: "scatter", mode: "markers", name: "average kWh", yaxis: "y2", x: s.by_station.map((r) => r.station),
        y: s.by_station.map((r) => r.average_energy_wh / 1000) },
    ], { barmode: "group", yaxis: { title: { text: c } },
         yaxis2: { title: { text: "kWh" }, overlaying: "y", side: "right" } }),
    draw("chart-holds", [
      { type: "bar", name: "holds", x: d.open_holds.by_age.map((b) => b.age), y: d.open_holds.by_age.map((b) => b.holds) },
    ], { yaxis: { title: { text: "open holds" } } }),
    draw("chart-fraud", [
      { type: "bar", name: "alerts", x: d.fraud.by_rule.map((r) => r.rule), y: d.fraud.by_rule.map((r) => r.alerts) },
    ], { yaxis: { title: { text: "alerts" } } }),
  ];
  const ops = d.operations;
  document.querySelectorAll(".ops").forEach((el) => { el.hidden = !ops; });
  $("ops-note").hidden = Boolean(ops);
  if (ops) {
    const consumed = ops.groups.reduce((n, g) => n + g.consumed, 0);
    const now = Date.now();
    rates.push({ t: now, consumed });
    while (rates.length > 120) rates.shift();
    const points = rates.slice(1).map((r, i) => ({
      t: new Date(r.t), rate: Math.max(0, (r.consumed - rates[i].consumed) / ((r.t - rates[i].t) / 1000)) }));
    draws.push(draw("chart-rate", [
      { type: "scatter", mode: "lines+markers", name: "events/s", x: points.map((p) => p.t), y: points.map((p) => p.rate) },
    ], { yaxis: { title: { text: "events/s" }, rangemode: "tozero" } }));
    draws.push(draw("chart-rejections", [
      { type: "bar", name: "records", x: ops.rejections_by_reason.map((r) => r.reason_code),
        y: ops.rejections_by_reason.map((r) => r.records) },
    ], { yaxis: { title: { text: "rejected records" } } }));
  }
  rows("doubt-table", d.in_doubt.oldest, (a) => [[a.payment_id], [a.provider], [a.action],
    [a.amount == null ? "" : money(a.amount, a.currency || c)], [age(a.age_seconds)]]);
  rows("fraud-table", d.fraud.latest, (a) => [[new Date(a.raised_at).toISOString().slice(0, 16).replace("T", " ")],
    [a.subject], [a.score.toFixed(2)], [a.action], [a.reason, "reason"]]);
  await Promise.all(draws);
  document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
}

function authTraces(items) {
  const methods = [...new Set(items.map((a) => a.payment_method))];
  return methods.map((m) => {
    const of = items.filter((a) => a.payment_method === m);
    return { type: "bar", name: m, x: of.map((a) => a.provider),
             y: of.map((a) => (a.success_rate == null ? null : 100 * a.success_rate)),
             text: of.map((a) => `${a.succeeded}/${a.succeeded + a.failed}`), textposition: "auto" };
  });
}

function start() {
  $("key-form").hidden = true;
  $("forget").hidden = false;
  $("filters").hidden = false;
  $("board").hidden = false;
  clearInterval(timer);
  poll();
  timer = setInterval(poll, POLL_MS);
}

function stop() {
  clearInterval(timer);
  timer = null;
}

function restart() {
  rates.length = 0;
  start();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) return fail("Paste an API key with the finance:read scope (evledger keys create).");
  sessionStorage.setItem(KEY, key);
  $("key").value = "";
  start();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  stop();
  location.reload();
});
["range", "station", "currency"].forEach((id) => $(id).addEventListener("change", restart));
if (sessionStorage.getItem(KEY)) start();
window.evledger = { last: () => last };
