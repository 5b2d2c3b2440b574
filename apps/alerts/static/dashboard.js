// Alerts dashboard: vanilla JS, no external assets. All text goes in via textContent.
"use strict";

const kindSelect = document.getElementById("kind");
const keySelect = document.getElementById("key");
const canvas = document.getElementById("chart");
const keysBody = document.querySelector("#keys tbody");
const alertList = document.getElementById("alerts");
const statusEl = document.getElementById("status");
let seriesByKey = new Map();

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function isoTime(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(url + " -> HTTP " + response.status);
  return response.json();
}

async function refreshSeries() {
  const kind = kindSelect.value;
  const data = await getJson("/api/series?kind=" + encodeURIComponent(kind) + "&limit=100");
  seriesByKey = new Map(data.series.map((s) => [s.key, s]));
  const previous = keySelect.value;
  keySelect.replaceChildren();
  for (const s of data.series) {
    const option = el("option", s.name);
    option.value = s.key;
    keySelect.appendChild(option);
  }
  if (seriesByKey.has(previous)) keySelect.value = previous;
  renderTable(data.series);
  drawChart(seriesByKey.get(keySelect.value));
}

function renderTable(series) {
  keysBody.replaceChildren();
  for (const s of series) {
    const last = s.windows[s.windows.length - 1];
    if (!last) continue;
    const row = el("tr");
    if (last.negative_share >= 0.5 && last.total >= 5) row.className = "hot";
    row.append(
      el("td", s.name),
      el("td", String(last.total)),
      el("td", String(last.negative)),
      el("td", (last.negative_share * 100).toFixed(0) + "%"),
      el("td", isoTime(last.end) + (last.open ? " (open)" : "")),
    );
    row.addEventListener("click", () => {
      keySelect.value = s.key;
      drawChart(s);
    });
    keysBody.appendChild(row);
  }
}

function drawChart(series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 40;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#5b6470";
  if (!series || series.windows.length === 0) {
    ctx.fillText("No windows yet for this selection.", pad, h / 2);
    return;
  }
  const windows = series.windows;
  const maxTotal = Math.max(1, ...windows.map((x) => x.total));
  const step = (w - 2 * pad) / windows.length;
  const y = (fraction) => h - pad - fraction * (h - 2 * pad);
  ctx.strokeStyle = "#dde1e6";
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(pad, y(f)); ctx.lineTo(w - pad, y(f)); ctx.stroke();
    ctx.fillText((f * 100).toFixed(0) + "%", w - pad + 4, y(f) + 4);
    ctx.fillText(String(Math.round(f * maxTotal)), 4, y(f) + 4);
  }
  windows.forEach((x, i) => {
    ctx.fillStyle = x.open ? "#c9d6ea" : "#9fb3d1";
    const barH = (x.total / maxTotal) * (h - 2 * pad);
    ctx.fillRect(pad + i * step + step * 0.15, h - pad - barH, step * 0.7, barH);
  });
  ctx.strokeStyle = "#c0392b";
  ctx.lineWidth = 2;
  ctx.beginPath();
  windows.forEach((x, i) => {
    const px = pad + (i + 0.5) * step, py = y(x.negative_share);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.stroke();
  windows.forEach((x, i) => {
    ctx.beginPath();
    ctx.arc(pad + (i + 0.5) * step, y(x.negative_share), 3.5, 0, 2 * Math.PI);
    ctx.fillStyle = x.open ? "#fff" : "#c0392b";
    ctx.fill(); ctx.stroke();
  });
  ctx.fillStyle = "#1d232b";
  ctx.fillText(series.kind + " " + series.name, pad, 16);
  ctx.fillStyle = "#5b6470";
  ctx.fillText(isoTime(windows[0].start), pad, h - 12);
  const endLabel = isoTime(windows[windows.length - 1].end);
  ctx.fillText(endLabel, w - pad - ctx.measureText(endLabel).width, h - 12);
}

function addAlert(alert, prepend) {
  const item = el("li");
  item.dataset.alertId = alert.alert_id;
  if (alertList.querySelector('[data-alert-id="' + CSS.escape(alert.alert_id) + '"]')) return;
  item.append(el("strong", alert.kind + " " + alert.name), el("div", alert.summary));
  item.append(el("div", alert.window_start + " – " + alert.window_end + " · z " + alert.evidence.z, "meta"));
  const examples = el("ul", undefined, "examples");
  for (const text of alert.evidence.examples || []) examples.appendChild(el("li", text));
  item.appendChild(examples);
  if (prepend) alertList.prepend(item); else alertList.appendChild(item);
}

async function start() {
  try {
    const recent = await getJson("/api/alerts?limit=50");
    for (const alert of recent.alerts) addAlert(alert, false);
    await refreshSeries();
  } catch (error) {
    statusEl.textContent = "error: " + error.message;
  }
  const source = new EventSource("/api/alerts/stream");
  source.addEventListener("open", () => { statusEl.textContent = "live"; });
  source.addEventListener("error", () => { statusEl.textContent = "reconnecting…"; });
  source.addEventListener("alert", (event) => {
    addAlert(JSON.parse(event.data), true);
    refreshSeries().catch(() => {});
  });
  setInterval(() => refreshSeries().catch((e) => { statusEl.textContent = "error: " + e.message; }), 10000);
}

kindSelect.addEventListener("change", () => refreshSeries());
keySelect.addEventListener("change", () => drawChart(seriesByKey.get(keySelect.value)));
start();
