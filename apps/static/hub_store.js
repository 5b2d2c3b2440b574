// Store page of the threefold demo hub: recommendations from the recs API (cross-origin).
// Every text from the API is set with textContent, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("store");
  const api = root.dataset.recsApi.replace(/\/+$/, "");
  const shopper = document.getElementById("shopper");
  const list = document.getElementById("recommendations");
  const statusLine = document.getElementById("status");

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  async function getJson(path, options) {
    const response = await fetch(api + path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || "HTTP " + response.status);
    return body;
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
    );
    item.addEventListener("click", () => view(entry));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") view(entry); });
    return item;
  }

  async function load() {
    setStatus("Loading…", false);
    try {
      const params = new URLSearchParams({ user_id: shopper.value, k: "8" });
      const body = await getJson("/api/recommendations?" + params.toString());
      list.replaceChildren(...body.items.map(card));
      list.dataset.loaded = String(Number(list.dataset.loaded) + 1);
      setStatus(body.items.length + " items" + (body.cold_start ? " (new shopper: popular picks)" : ""), false);
    } catch (error) {
      setStatus("Could not load recommendations: " + error.message, true);
    }
  }

  async function view(entry) {
    try {
      await getJson("/api/events", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: shopper.value, item_id: entry.item_id, event: "click" }),
      });
    } catch (error) {
      setStatus("Could not record the click: " + error.message, true);
      return;
    }
    await load();
  }

  async function start() {
    try {
      const users = await getJson("/api/users?limit=20");
      for (const user of users.users) {
        const option = document.createElement("option");
        option.value = user;
        option.textContent = user;
        shopper.append(option);
      }
      const visitor = document.createElement("option");
      visitor.value = "visitor-" + Math.random().toString(36).slice(2, 8);
      visitor.textContent = "New visitor (no history)";
      shopper.append(visitor);
    } catch (error) {
      setStatus("Could not reach the recommendation API: " + error.message, true);
      return;
    }
    shopper.addEventListener("change", load);
    document.getElementById("refresh").addEventListener("click", load);
    await load();
  }

  start();
})();
