// Alerts dashboard: vanilla JS, no external assets. All text goes in via textContent.
"use strict";

const REFRESH_MS = 10000;
const RETRY_DELAYS_S = [5, 10, 20, 30];
const REQUEST_TIMEOUT_MS = 10000;
const FEED_RECONNECT_MS = 5000;
const FEED_MAX_RECONNECT_MS = 60000;
const SERIES_WINDOWS = 100;
const ALERTS_SHOWN = 5;
const KIND_WORDS = { topic: "topic", entity: "company" };
const KIND_PLURALS = { topic: "topics", entity: "companies" };
const NO_KEYS = "No keys yet: the consumer has not aggregated any messages.";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const COLORS = {
  text: "#3b434d", grid: "#dde1e6", axis: "#8a939e", bar: "#8fa7c9", openBar: "#d5e0ef",
  line: "#c0392b", empty: "#5b6470",
};

const ui = {
  status: byId("status"),
  problem: byId("problem"),
  problemText: byId("problem-text"),
  retryWhen: byId("retry-when"),
  retry: byId("retry"),
  announce: byId("announce"),
  alerts: byId("alerts"),
  alertsEmpty: byId("alerts-empty"),
  alertsMore: byId("alerts-more"),
  kind: byId("kind"),
  key: byId("key"),
  chartTitle: byId("chart-title"),
  canvas: byId("chart"),
  dataCaption: byId("chart-data-caption"),
  dataBody: document.querySelector("#chart-data tbody"),
  keysBody: document.querySelector("#keys tbody"),
  keysTable: byId("keys"),
  keysEmpty: byId("keys-empty"),
  keysMore: byId("keys-more"),
};

const state = {
  series: [], // the last /api/series answer that loaded
  seriesKind: null, // the kind that answer is for
  seriesTotal: 0, // how many keys that kind has (the answer holds the latest few)
  selectedKey: null,
  wantedKey: null, // a key to select once the series of its kind has loaded
  alerts: new Map(), // alert_id -> <li>
  alertsLoaded: false,
  showAllAlerts: false,
  updatedAt: null, // when data last loaded
  failure: null, // { what, url, why, at } while the API is failing
  failures: 0,
  nextTryAt: null,
  timer: null,
  inFlight: false,
  again: false,
  feedLive: false,
  feedSource: null,
  feedTimer: null,
  feedRetryMs: FEED_RECONNECT_MS,
  lastEventId: null,
  news: [], // headlines of new alerts waiting to be announced
  newsTimer: null,
};

function byId(id) {
  return document.getElementById(id);
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// -- words and numbers ---------------------------------------------------------------------

const pad2 = (n) => String(n).padStart(2, "0");
const hhmm = (seconds) => {
  const d = new Date(seconds * 1000);
  return pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes());
};
const clock = (date) =>
  pad2(date.getUTCHours()) + ":" + pad2(date.getUTCMinutes()) + ":" + pad2(date.getUTCSeconds()) + " UTC";
const utcDay = (seconds) => Math.floor(seconds / 86400);

function dayLabel(seconds) {
  const d = new Date(seconds * 1000);
  const label = d.getUTCDate() + " " + MONTHS[d.getUTCMonth()];
  return d.getUTCFullYear() === new Date().getUTCFullYear() ? label : label + " " + d.getUTCFullYear();
}

function percent(fraction) {
  if (fraction > 0 && fraction < 0.005) return "<1 %";
  return Math.round(fraction * 100) + " %";
}

/** "13:40–13:45 UTC", with the day in front when it is not today. */
function timeSpan(start, end) {
  const day = utcDay(start) === utcDay(Date.now() / 1000) ? "" : dayLabel(start) + ", ";
  return day + hhmm(start) + "–" + hhmm(end) + " UTC";
}

/** "13:46 UTC", with the day in front when it is not today. */
function moment(seconds) {
  const day = utcDay(seconds) === utcDay(Date.now() / 1000) ? "" : dayLabel(seconds) + ", ";
  return day + hhmm(seconds) + " UTC";
}

function describeKey(series) {
  return series.name + " (" + (KIND_WORDS[series.kind] || series.kind) + ")";
}

// -- API -----------------------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(what, url, why) {
    super(what + ": " + why);
    Object.assign(this, { what, url, why });
  }
}

async function getJson(url, what) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, signal: abort.signal });
  } catch (error) {
    const why = abort.signal.aborted
      ? "no answer within " + REQUEST_TIMEOUT_MS / 1000 + " s"
      : "the dashboard server did not answer: it may be down, or the network dropped";
    throw new ApiFailure(what, url, why);
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    let detail = "";
    try {
      detail = (await response.json()).message || "";
    } catch (error) {
      detail = "";
    }
    const why = "the server answered HTTP " + response.status + (detail ? ": " + detail : "");
    throw new ApiFailure(what, url, why);
  }
  try {
    return await response.json();
  } catch (error) {
    throw new ApiFailure(what, url, "the answer was not valid JSON");
  }
}

/** Load alerts and the series of the chosen kind; on failure keep what is shown and retry. */
async function refresh() {
  if (state.inFlight) {
    state.again = true;
    return;
  }
  state.inFlight = true;
  clearTimeout(state.timer);
  renderProblem();
  const kind = ui.kind.value;
  const seriesWhat = "the " + KIND_PLURALS[kind] + " chart data";
  const requests = [
    { what: "the alert list", url: "/api/alerts?limit=50", apply: (data) => applyAlerts(data.alerts) },
    {
      what: seriesWhat,
      url: "/api/series?kind=" + encodeURIComponent(kind) + "&limit=" + SERIES_WINDOWS,
      load: (url) => loadSeries(url, kind, seriesWhat),
      apply: (data) => ui.kind.value === kind && applySeries(data.series, kind, data.total),
    },
  ];
  const results = await Promise.allSettled(requests.map((r) => (r.load || getJson)(r.url, r.what)));
  try {
    const failed = [];
    results.forEach((result, i) => {
      const request = requests[i];
      try {
        if (result.status === "rejected") throw result.reason;
        request.apply(result.value);
      } catch (error) {
        if (error instanceof ApiFailure) {
          failed.push(error);
        } else {
          console.error("unreadable answer from", request.url, error);
          failed.push(new ApiFailure(request.what, request.url, "the answer was not in the expected format"));
        }
      }
    });
    if (failed.length) {
      fail(failed);
    } else {
      const recovered = state.failure !== null;
      state.failure = null;
      state.failures = 0;
      state.updatedAt = new Date();
      schedule(REFRESH_MS);
      if (recovered) say("Connection restored. Data updated " + clock(state.updatedAt) + ".");
      if (recovered && !state.feedLive) connectFeed(); // the API is back: no need to wait
    }
  } finally {
    state.inFlight = false;
    renderStatus();
    renderProblem();
    renderAlertsChrome();
  }
  if (state.again) {
    state.again = false;
    refresh();
  }
}

function fail(errors) {
  const first = state.failure === null;
  const whys = [...new Set(errors.map((e) => e.why))];
  state.failure = {
    what: errors.map((e) => e.what).join(" and "),
    why: whys.join("; "),
    urls: errors.map((e) => "GET " + e.url),
    at: new Date(),
  };
  const delay = RETRY_DELAYS_S[Math.min(state.failures, RETRY_DELAYS_S.length - 1)];
  state.failures += 1;
  schedule(delay * 1000);
  if (first) say("Could not load " + state.failure.what + ". Retrying in " + delay + " seconds.");
}

function schedule(ms) {
  clearTimeout(state.timer);
  state.nextTryAt = Date.now() + ms;
  state.timer = setTimeout(refresh, ms);
}

function say(text) {
  ui.announce.textContent = text;
}

/** The most recently updated keys of `kind` (one page), and the key asked for or chosen when
 * it is not among them (an alert's key, or one that has since gone quiet). */
async function loadSeries(url, kind, what) {
  const data = await getJson(url, what);
  const shown = new Set(data.series.map((s) => s.key));
  const missing = [state.wantedKey, state.selectedKey].filter((k) => k && k.startsWith(kind + ":") && !shown.has(k));
  for (const key of new Set(missing)) {
    const one = await getJson("/api/series?key=" + encodeURIComponent(key) + "&limit=" + SERIES_WINDOWS, what);
    data.series.push(...one.series.filter((s) => s.windows.length));
  }
  return data;
}

// -- status and error box ------------------------------------------------------------------

function renderStatus() {
  let text;
  let mode;
  if (state.failure) {
    mode = "error";
    text = "Offline · " + (state.updatedAt ? "showing data from " + clock(state.updatedAt) : "no data yet");
  } else if (!state.updatedAt) {
    mode = "connecting";
    text = "Connecting…";
  } else if (state.feedLive) {
    mode = "live";
    text = "Live · updated " + clock(state.updatedAt);
  } else {
    mode = "warn";
    text = "Updated " + clock(state.updatedAt) + " · live feed reconnecting…";
  }
  ui.status.dataset.state = mode;
  ui.status.textContent = text;
}

function renderProblem() {
  const failure = state.failure;
  ui.problem.hidden = failure === null;
  if (!failure) return;
  ui.problemText.replaceChildren(
    el("strong", "Could not load " + failure.what + "."),
    document.createTextNode(
      " " + capitalise(failure.why) + " (" + clock(failure.at) + ": " + failure.urls.join(", ") + "). " +
        (state.updatedAt
          ? "Still showing the " + (state.seriesKind === ui.kind.value ? "data" : KIND_PLURALS[state.seriesKind])
            + " loaded at " + clock(state.updatedAt) + "."
          : "Nothing to show until it loads."),
    ),
  );
  renderRetryWhen();
}

function renderRetryWhen() {
  if (!state.failure) return;
  if (state.inFlight) {
    ui.retryWhen.textContent = "Trying again now…";
    return;
  }
  const seconds = Math.max(0, Math.ceil((state.nextTryAt - Date.now()) / 1000));
  ui.retryWhen.textContent = "Next automatic try in " + seconds + " s.";
}

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// -- alerts --------------------------------------------------------------------------------

function compareEventIds(a, b) {
  const [am, as] = String(a).split("-").map(Number);
  const [bm, bs] = String(b).split("-").map(Number);
  return am - bm || (as || 0) - (bs || 0);
}

function applyAlerts(alerts) {
  for (const alert of alerts) {
    if (addAlert(alert, alert.event_id) && state.alertsLoaded) announceAlert(alert);
  }
  state.alertsLoaded = true;
  renderAlertsChrome();
}

/** Insert one alert in feed order (newest first); false if it is already shown. */
function addAlert(alert, eventId) {
  if (state.alerts.has(alert.alert_id)) return false;
  const item = renderAlert(alert);
  item.dataset.eventId = eventId || "0-0";
  if (eventId && (!state.lastEventId || compareEventIds(eventId, state.lastEventId) > 0)) {
    state.lastEventId = eventId;
  }
  const newer = (li) => compareEventIds(li.dataset.eventId, item.dataset.eventId) < 0;
  const after = [...ui.alerts.children].find(newer);
  ui.alerts.insertBefore(item, after || null);
  state.alerts.set(alert.alert_id, item);
  return true;
}

/** New alerts arriving together are announced once: "2 new alerts: legal (topic), QNTV (company)". */
function announceAlert(alert) {
  state.news.push(alertHeadline(alert));
  clearTimeout(state.newsTimer);
  state.newsTimer = setTimeout(() => {
    const n = state.news.length;
    say((n === 1 ? "New alert: " : n + " new alerts: ") + state.news.join(", "));
    state.news = [];
  }, 500);
}

function alertHeadline(alert) {
  return alert.name + " (" + (KIND_WORDS[alert.kind] || alert.kind) + ")";
}

function secondsOf(timestamp, iso) {
  return typeof timestamp === "number" ? timestamp : Date.parse(iso) / 1000;
}

function renderAlert(alert) {
  const evidence = alert.evidence || {};
  const start = secondsOf(alert.window_start_ts, alert.window_start);
  const end = secondsOf(alert.window_end_ts, alert.window_end);
  const usual = evidence.baseline_windows
    ? percent(evidence.baseline_share) + " usual"
    : percent(evidence.baseline_share) + " assumed (no history yet)";
  const item = el("li", undefined, "alert");
  item.dataset.alertId = alert.alert_id;
  item.dataset.key = alert.key;

  const heading = el("h3", "Negative sentiment surge: ");
  const name = el("span", alert.name, "alert-name");
  name.dir = "auto"; // a name in Arabic or Hebrew keeps its direction in the English heading
  heading.append(name, " (" + (KIND_WORDS[alert.kind] || alert.kind) + ")");
  const figures = el("p", undefined, "alert-figures");
  figures.append(
    el("strong", percent(evidence.negative_share) + " negative"),
    " vs " + usual + ", " + evidence.negative + " of " + evidence.total + " headlines, ",
    el("span", timeSpan(start, end), "keep-together"),
  );
  const detected = Date.parse(alert.detected_at) / 1000;
  const when = alert.stage === "early" ? "while the window was still open" : "when the window closed";
  const meta = el("p", "Raised " + (Number.isNaN(detected) ? "" : moment(detected) + ", ") + when +
    " · signal strength z = " + Number(evidence.z).toFixed(1) +
    " (alerts from " + evidence.z_threshold + ")", "meta");
  item.append(heading, figures, meta);

  const examples = evidence.examples || [];
  if (examples.length) {
    item.append(el("p", "Example headlines", "examples-title"));
    const list = el("ul", undefined, "examples");
    for (const text of examples) list.appendChild(Object.assign(el("li", text), { dir: "auto" }));
    item.append(list);
  }
  const show = el("button", "Show " + alert.name + " on the chart", "link-button");
  show.type = "button";
  show.addEventListener("click", () => showOnChart(alert));
  item.append(show, renderVerdict(alert));
  return item;
}

/** False / true alarm buttons for signed-in analysts (review.js sends them). */
function renderVerdict(alert) {
  const box = el("div", undefined, "verdict");
  const buttons = el("p", undefined, "verdict-buttons");
  for (const [value, text] of [["false_alarm", "False alarm"], ["true_alarm", "True alarm"]]) {
    const button = el("button", text);
    button.type = "button";
    button.dataset.verdict = value;
    button.setAttribute("aria-label", text + ": " + alert.name);
    button.setAttribute("aria-pressed", "false"); // review.js presses the stored verdict
    buttons.append(button);
  }
  box.append(buttons, el("p", "", "verdict-status"));
  return box;
}

function renderAlertsChrome() {
  const count = ui.alerts.children.length;
  if (count) {
    ui.alertsEmpty.hidden = true;
  } else {
    ui.alertsEmpty.hidden = false;
    ui.alertsEmpty.textContent = state.alertsLoaded
      ? "No alerts yet. New ones appear here as soon as the consumer raises them."
      : state.failure
        ? "Alerts could not be loaded yet: see the message above."
        : "Loading alerts…";
  }
  ui.alerts.classList.toggle("collapsed", !state.showAllAlerts);
  ui.alertsMore.hidden = count <= ALERTS_SHOWN;
  ui.alertsMore.setAttribute("aria-expanded", String(state.showAllAlerts));
  ui.alertsMore.textContent = state.showAllAlerts
    ? "Show only the latest " + ALERTS_SHOWN
    : "Show all " + count + " alerts";
}

function showOnChart(alert) {
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  document.querySelector(".charts").scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
  if (state.series.some((s) => s.key === alert.key)) {
    selectKey(alert.key);
    return;
  }
  state.wantedKey = alert.key;
  if (alert.kind in KIND_WORDS) ui.kind.value = alert.kind;
  refresh();
}

// -- series: key list, table, chart --------------------------------------------------------

function applySeries(series, kind, total) {
  state.series = series;
  state.seriesKind = kind;
  state.seriesTotal = Math.max(total || 0, series.length);
  const keys = series.map((s) => s.key);
  const newestAlert = ui.alerts.firstElementChild;
  const alertKey = newestAlert ? newestAlert.dataset.key : null;
  const chosen = [state.wantedKey, state.selectedKey, alertKey].find((k) => k && keys.includes(k));
  state.selectedKey = chosen || keys[0] || null;
  state.wantedKey = null;
  renderKeyOptions();
  renderKeysTable();
  renderChart();
}

function selectKey(key) {
  state.selectedKey = key;
  ui.key.value = key;
  for (const button of ui.keysBody.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.closest("tr").dataset.key === key));
  }
  renderChart();
}

/** One option per key; with none, the menu is disabled and its one option says why. */
function renderKeyOptions() {
  const options = state.series.length
    ? state.series.map((s) => [s.key, s.name])
    : [["", state.seriesKind ? "No keys yet" : "No keys loaded yet"]];
  const wanted = options.map(([key, name]) => key + "\u0000" + name).join("\u0001");
  if (ui.key.dataset.options !== wanted) {
    ui.key.replaceChildren(...options.map(([key, name]) => Object.assign(el("option", name), { value: key })));
    ui.key.dataset.options = wanted;
  }
  if (state.selectedKey) ui.key.value = state.selectedKey;
  ui.key.disabled = state.series.length === 0;
}

/** Rows are updated in place, so a focused key button keeps its focus across refreshes. */
function renderKeysTable() {
  const rows = new Map([...ui.keysBody.children].map((row) => [row.dataset.key, row]));
  const wanted = [];
  for (const s of state.series) {
    const last = s.windows[s.windows.length - 1];
    if (!last) continue;
    let row = rows.get(s.key);
    if (!row) row = keyRow(s.key);
    const [keyCell, shareCell, countCell, windowCell] = row.children;
    const button = keyCell.firstChild;
    button.textContent = s.name;
    button.setAttribute("aria-pressed", String(s.key === state.selectedKey));
    const hot = last.negative_share >= 0.5 && last.total >= 5;
    row.classList.toggle("hot", hot);
    shareCell.replaceChildren(percent(last.negative_share));
    if (hot) shareCell.append(" ", el("span", "high", "flag"));
    countCell.textContent = last.negative + " / " + last.total;
    windowCell.replaceChildren(hhmm(last.start) + "–" + hhmm(last.end));
    if (last.open) windowCell.append(" ", el("span", "open", "open-tag"));
    wanted.push(row);
  }
  const more = state.seriesTotal - state.series.length;
  ui.keysMore.hidden = more <= 0;
  ui.keysMore.textContent = more > 0
    ? "Showing the " + state.series.length + " most recently updated of " + state.seriesTotal + " " +
      KIND_PLURALS[state.seriesKind] + "."
    : "";
  ui.keysEmpty.hidden = wanted.length > 0;
  ui.keysEmpty.textContent = state.seriesKind ? NO_KEYS : "No keys loaded yet.";
  ui.keysTable.hidden = wanted.length === 0;
  const current = [...ui.keysBody.children];
  if (current.length !== wanted.length || current.some((row, i) => row !== wanted[i])) {
    ui.keysBody.replaceChildren(...wanted);
  }
}

function keyRow(key) {
  const row = el("tr");
  row.dataset.key = key;
  const head = el("th");
  head.scope = "row";
  const button = el("button", undefined, "key-button");
  button.type = "button";
  button.dir = "auto";
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    selectKey(key);
  });
  head.append(button);
  row.append(head, el("td"), el("td"), el("td"));
  row.addEventListener("click", () => selectKey(key)); // the whole row is a mouse target too
  return row;
}

function selectedSeries() {
  return state.series.find((s) => s.key === state.selectedKey) || null;
}

function renderChart() {
  const series = selectedSeries();
  const windows = series ? series.windows : [];
  let summary;
  if (!series) {
    summary = state.seriesKind ? NO_KEYS : "No data loaded yet.";
    ui.chartTitle.textContent = summary;
  } else if (!windows.length) {
    summary = "No windows yet for " + describeKey(series) + ".";
    ui.chartTitle.textContent = summary;
  } else {
    const first = windows[0], last = windows[windows.length - 1];
    const span = timeSpan(first.start, last.end);
    ui.chartTitle.textContent = describeKey(series) + ": " + windows.length + " windows, " + span;
    const shares = windows.map((w) => w.negative_share);
    summary = "Chart of " + describeKey(series) + ", " + span + ": messages per window from " +
      Math.min(...windows.map((w) => w.total)) + " to " + Math.max(...windows.map((w) => w.total)) +
      ", negative share from " + percent(Math.min(...shares)) + " to " + percent(Math.max(...shares)) +
      ". Latest window " + hhmm(last.start) + "–" + hhmm(last.end) + (last.open ? " (still open)" : "") +
      ": " + percent(last.negative_share) + " negative of " + last.total + " messages. " +
      "The numbers are in the table “Chart data as a table” below.";
  }
  ui.canvas.setAttribute("aria-label", summary);
  ui.dataCaption.textContent = series
    ? "Messages and negative share per window for " + describeKey(series)
    : "No data loaded yet";
  ui.dataBody.replaceChildren(
    ...windows.map((w) => {
      const row = el("tr");
      const head = el("th", hhmm(w.start) + "–" + hhmm(w.end) + (w.open ? " (open)" : ""));
      head.scope = "row";
      row.append(head, el("td", String(w.total)), el("td", String(w.negative)));
      row.append(el("td", percent(w.negative_share)));
      return row;
    }),
  );
  ui.canvas.closest("figure").classList.toggle("no-data", !windows.length);
  drawChart(series, summary);
}

/** Nice count ticks that line up with 4 or 5 share gridlines: 0/5/10/15/20, 0/25/50/75/100 … */
function countScale(max) {
  const steps = [];
  for (let power = 1; power <= 1e7; power *= 10) {
    for (const m of [1, 2, 2.5, 5]) if (Number.isInteger(m * power)) steps.push(m * power);
  }
  let best = null;
  for (const n of [4, 5]) {
    const step = steps.find((s) => s * n >= max);
    if (!best || step * n < best.top) best = { n, step, top: step * n };
  }
  return best;
}

const TIME_STEPS_MIN = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];

function drawChart(series, emptyText) {
  const canvas = ui.canvas;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (!width || !height) return;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "12px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  const windows = series ? series.windows : [];
  if (!windows.length) {
    ctx.fillStyle = COLORS.empty;
    ctx.textAlign = "center";
    ctx.fillText(emptyText, width / 2, height / 2, width - 16);
    return;
  }
  const scale = countScale(Math.max(1, ...windows.map((w) => w.total)));
  const labelWidth = (text) => Math.ceil(ctx.measureText(text).width);
  const box = {
    left: 22 + labelWidth(String(scale.top)) + 8,
    right: width - (22 + labelWidth("100 %") + 8),
    top: 10,
    bottom: height - 52,
  };
  const plotH = box.bottom - box.top, plotW = box.right - box.left;

  // x: time. Each bar covers the last `slot` seconds of its window (the whole window when tumbling).
  const ends = windows.map((w) => w.end);
  let slot = windows[0].end - windows[0].start;
  for (let i = 1; i < ends.length; i++) slot = Math.min(slot, Math.max(1, ends[i] - ends[i - 1]));
  const t0 = ends[0] - slot, t1 = ends[ends.length - 1];
  const x = (t) => box.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
  const yCount = (c) => box.bottom - (c / scale.top) * plotH;
  const yShare = (f) => box.bottom - f * plotH;

  // gridlines with count ticks (left) and share ticks (right)
  ctx.lineWidth = 1;
  for (let i = 0; i <= scale.n; i++) {
    const y = Math.round(yShare(i / scale.n)) + 0.5;
    ctx.strokeStyle = i === 0 ? COLORS.axis : COLORS.grid;
    ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.right, y); ctx.stroke();
    ctx.fillStyle = COLORS.text;
    ctx.textAlign = "right";
    ctx.fillText(String(i * scale.step), box.left - 6, y);
    ctx.textAlign = "left";
    ctx.fillText(Math.round((i * 100) / scale.n) + " %", box.right + 6, y);
  }

  // bars: messages per window
  for (const w of windows) {
    const left = x(w.end - slot), right = x(w.end);
    const gap = Math.min(6, (right - left) * 0.2);
    const top = yCount(w.total);
    ctx.fillStyle = w.open ? COLORS.openBar : COLORS.bar;
    ctx.fillRect(left + gap / 2, top, Math.max(1, right - left - gap), box.bottom - top);
  }

  // line: negative share, hollow points for open windows
  const px = (w) => x(w.end - slot / 2);
  ctx.strokeStyle = COLORS.line;
  ctx.lineWidth = 2;
  ctx.beginPath();
  windows.forEach((w, i) => {
    if (i) ctx.lineTo(px(w), yShare(w.negative_share));
    else ctx.moveTo(px(w), yShare(w.negative_share));
  });
  ctx.stroke();
  for (const w of windows) {
    ctx.beginPath();
    ctx.arc(px(w), yShare(w.negative_share), 4, 0, 2 * Math.PI);
    ctx.fillStyle = w.open ? "#fff" : COLORS.line;
    ctx.fill();
    ctx.stroke();
  }

  // time ticks: the smallest round step that keeps labels ~72 px apart; the day under the first
  const stepMin = TIME_STEPS_MIN.find((m) => (m * 60 * plotW) / Math.max(1, t1 - t0) >= 72) || 10080;
  const step = stepMin * 60;
  ctx.fillStyle = COLORS.text;
  ctx.strokeStyle = COLORS.axis;
  ctx.lineWidth = 1;
  ctx.textAlign = "center";
  let lastDay = null;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const tx = Math.round(x(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(tx, box.bottom); ctx.lineTo(tx, box.bottom + 4); ctx.stroke();
    ctx.fillText(hhmm(t), tx, box.bottom + 13);
    if (utcDay(t) !== lastDay) ctx.fillText(dayLabel(t), tx, box.bottom + 27);
    lastDay = utcDay(t);
  }

  // axis titles
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.fillStyle = COLORS.text;
  ctx.fillText("Time (UTC)", box.left + plotW / 2, height - 8);
  const titles = [["Messages per window", 12, -Math.PI / 2], ["Negative share", width - 12, Math.PI / 2]];
  for (const [title, tx, angle] of titles) {
    ctx.save();
    ctx.translate(tx, box.top + plotH / 2);
    ctx.rotate(angle);
    ctx.fillText(title, 0, 0);
    ctx.restore();
  }
}

// -- the live feed (server-sent events) ----------------------------------------------------

function connectFeed() {
  clearTimeout(state.feedTimer);
  if (state.feedSource) state.feedSource.close(); // one feed at a time
  const since = state.lastEventId ? "?since=" + encodeURIComponent(state.lastEventId) : "";
  const source = new EventSource("/api/alerts/stream" + since);
  state.feedSource = source;
  source.addEventListener("open", () => {
    state.feedLive = true;
    state.feedRetryMs = FEED_RECONNECT_MS;
    renderStatus();
  });
  source.addEventListener("error", () => {
    // The browser would reconnect every few seconds for as long as the API is down, each try an
    // error in the console: close it and try again later, waiting longer after each failure.
    state.feedLive = false;
    renderStatus();
    source.close();
    state.feedTimer = setTimeout(connectFeed, state.feedRetryMs);
    state.feedRetryMs = Math.min(state.feedRetryMs * 2, FEED_MAX_RECONNECT_MS);
  });
  source.addEventListener("end", (event) => {
    // The server ends each feed after a few minutes (so feeds never pile up on its threads):
    // reconnect at once from the id it names; the feed stays live, nothing to report.
    let resumeFrom = null;
    try {
      resumeFrom = JSON.parse(event.data).resume_from;
    } catch (error) {
      resumeFrom = null;
    }
    if (resumeFrom && (!state.lastEventId || compareEventIds(resumeFrom, state.lastEventId) > 0)) {
      state.lastEventId = resumeFrom;
    }
    connectFeed();
  });
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (addAlert(alert, event.lastEventId)) announceAlert(alert);
    renderAlertsChrome();
    refresh();
  });
}

// -- wiring --------------------------------------------------------------------------------

ui.kind.addEventListener("change", () => {
  state.wantedKey = null;
  refresh();
});
ui.key.addEventListener("change", () => selectKey(ui.key.value));
ui.retry.addEventListener("click", () => refresh());
ui.alertsMore.addEventListener("click", () => {
  state.showAllAlerts = !state.showAllAlerts;
  renderAlertsChrome();
});
let redrawQueued = false;
new ResizeObserver(() => {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => {
    redrawQueued = false;
    renderChart();
  });
}).observe(ui.canvas);
setInterval(renderRetryWhen, 1000);

refresh().then(connectFeed);
