// Storefront: shopper picker, recommendation cards, click -> event -> fresh list.
// Served by the recs app for its own /store page and loaded cross-origin by the demo hub's store
// page. Elements are found by their data-store role; category, diversity and history are
// optional. The script tag's data-recs-api names the recs API (default: this page's origin).
// Every text is set with textContent (never innerHTML).
"use strict";

(function () {
  const script = document.currentScript;
  const api = ((script && script.dataset.recsApi) || "").replace(/\/+$/, "");
  const role = (name) => document.querySelector('[data-store="' + name + '"]');
  const userSelect = role("shopper");
  const categorySelect = role("category");
  const diversityInput = role("diversity");
  const diversityValue = role("diversity-value");
  const list = role("list");
  const historyList = role("history");
  const statusLine = role("status");
  const clicks = {};

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  async function getJson(path, options) {
    const response = await fetch(api + path, options);
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

  function text(tag, className, value) {
    const element = document.createElement(tag);
    element.className = className;
    element.textContent = value;
    return element;
  }

  function card(entry) {
    const item = document.createElement("li");
    item.className = "card";
    item.tabIndex = 0;
    item.dataset.itemId = entry.item_id;
    const price = entry.price === undefined || entry.price === null ? "" : " · $" + Number(entry.price).toFixed(2);
    item.append(
      text("span", "title", entry.title),
      text("span", "meta", (entry.category || "") + price),
      text("span", "reason", entry.reason || ""),
      text("span", "description", entry.description || ""),
    );
    item.addEventListener("click", () => viewItem(entry));
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter") viewItem(entry);
    });
    return item;
  }

  function renderHistory() {
    if (!historyList) return;
    historyList.replaceChildren();
    for (const title of (clicks[userSelect.value] || []).slice(-8).reverse()) {
      const entry = document.createElement("li");
      entry.textContent = title;
      historyList.append(entry);
    }
  }

  async function loadRecommendations() {
    const params = new URLSearchParams({ user_id: userSelect.value, k: "8" });
    if (diversityInput) params.set("diversity", diversityInput.value);
    if (categorySelect && categorySelect.value) params.set("category", categorySelect.value);
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
      const [users, categories] = await Promise.all([
        getJson("/api/users?limit=30"),
        categorySelect ? getJson("/api/categories") : Promise.resolve({ categories: [] }),
      ]);
      userSelect.append(option("visitor-" + Math.random().toString(36).slice(2, 8), "New visitor (no history)"));
      for (const user of users.users) userSelect.append(option(user, user));
      for (const name of categories.categories) categorySelect.append(option(name, name));
    } catch (error) {
      setStatus("Could not reach the recommendation API: " + error.message, true);
      return;
    }
    userSelect.addEventListener("change", loadRecommendations);
    if (categorySelect) categorySelect.addEventListener("change", loadRecommendations);
    if (diversityInput) {
      diversityInput.addEventListener("input", () => {
        diversityValue.textContent = Number(diversityInput.value).toFixed(1);
      });
      diversityInput.addEventListener("change", loadRecommendations);
    }
    role("refresh").addEventListener("click", loadRecommendations);
    await loadRecommendations();
  }

  start();
})();
