// Storefront demo: every text is set with textContent (never innerHTML).
"use strict";

const userSelect = document.getElementById("user");
const categorySelect = document.getElementById("category");
const diversityInput = document.getElementById("diversity");
const diversityValue = document.getElementById("diversity-value");
const list = document.getElementById("recs");
const historyList = document.getElementById("history");
const statusLine = document.getElementById("status");
const clicks = {};

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.message || ("HTTP " + response.status));
  }
  return body;
}

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label;
  return element;
}

function card(entry) {
  const item = document.createElement("li");
  item.className = "card";
  item.tabIndex = 0;
  item.dataset.itemId = entry.item_id;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = entry.title;
  const meta = document.createElement("span");
  meta.className = "meta";
  const price = entry.price === undefined ? "" : " · $" + Number(entry.price).toFixed(2);
  meta.textContent = entry.category + price;
  const reason = document.createElement("span");
  reason.className = "reason";
  reason.textContent = entry.reason;
  const description = document.createElement("span");
  description.className = "description";
  description.textContent = entry.description;
  item.append(title, meta, reason, description);
  item.addEventListener("click", () => viewItem(entry));
  item.addEventListener("keydown", (event) => {
    if (event.key === "Enter") viewItem(entry);
  });
  return item;
}

function renderHistory() {
  historyList.replaceChildren();
  for (const title of (clicks[userSelect.value] || []).slice(-8).reverse()) {
    const entry = document.createElement("li");
    entry.textContent = title;
    historyList.append(entry);
  }
}

async function loadRecommendations() {
  const params = new URLSearchParams({ user_id: userSelect.value, k: "8", diversity: diversityInput.value });
  if (categorySelect.value) params.set("category", categorySelect.value);
  setStatus("Loading…", false);
  try {
    const body = await getJson("/api/recommendations?" + params.toString());
    list.replaceChildren(...body.items.map(card));
    list.dataset.version = String(Number(list.dataset.version) + 1);
    const kind = body.cold_start ? "new shopper: popular picks" : "personalised";
    setStatus(body.items.length + " items, " + kind + (body.cached ? " (from cache)" : ""), false);
  } catch (error) {
    setStatus("Could not load recommendations: " + error.message, true);
  }
  renderHistory();
}

async function viewItem(entry) {
  try {
    await getJson("/api/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: userSelect.value, item_id: entry.item_id, event: "click" }),
    });
    (clicks[userSelect.value] = clicks[userSelect.value] || []).push(entry.title);
  } catch (error) {
    setStatus("Could not record the click: " + error.message, true);
    return;
  }
  await loadRecommendations();
}

async function start() {
  try {
    const [users, categories] = await Promise.all([getJson("/api/users?limit=30"), getJson("/api/categories")]);
    userSelect.append(option("visitor-" + Math.random().toString(36).slice(2, 8), "New visitor (no history)"));
    for (const user of users.users) userSelect.append(option(user, user));
    for (const name of categories.categories) categorySelect.append(option(name, name));
  } catch (error) {
    setStatus("Could not reach the API: " + error.message, true);
    return;
  }
  userSelect.addEventListener("change", loadRecommendations);
  categorySelect.addEventListener("change", loadRecommendations);
  diversityInput.addEventListener("input", () => { diversityValue.textContent = Number(diversityInput.value).toFixed(1); });
  diversityInput.addEventListener("change", loadRecommendations);
  document.getElementById("refresh").addEventListener("click", loadRecommendations);
  await loadRecommendations();
}

start();
