// The recs app's storefront (/store): shopper picker, recommendation cards (buttons), a click
// records an event and fetches a fresh list. When the recommendation API is down the page
// keeps what it shows, says what failed and offers "Try again" (automatic after a 503's
// Retry-After). Every text is set with textContent (never innerHTML).
"use strict";

(function () {
  const byId = (id) => document.getElementById(id);
  const userSelect = byId("user");
  const categorySelect = byId("category");
  const diversityInput = byId("diversity");
  const diversityValue = byId("diversity-value");
  const list = byId("recs");
  const historyList = byId("history");
  const historyEmpty = byId("history-empty");
  const statusLine = byId("status");
  const problem = byId("problem");
  const problemText = byId("problem-text");
  const retryButton = byId("retry");
  const clicks = {};
  const MAX_AUTO_RETRY_S = 60;
  let retryAction = null;
  let retryTimer = null;
  let latestLoad = 0; // only the newest request's answer is shown (answers can arrive out of order)
  let started = false; // the shopper and category lists have loaded once
  let starting = null; // the shop's load under way, if any
  let recording = false; // a click being recorded: a double click records it once

  class ApiError extends Error {
    constructor(message, retryAfterS) {
      super(message);
      this.retryAfterS = retryAfterS;
    }
  }

  async function getJson(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      throw new ApiError("the recommendation service did not answer", null);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("Retry-After"));
      const reason = body.message || body.reason || "it answered HTTP " + response.status;
      throw new ApiError(reason, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null);
    }
    return body;
  }

  function clearProblem() {
    clearTimeout(retryTimer);
    retryAction = null;
    problem.hidden = true;
  }

  function showProblem(what, error, action) {
    clearTimeout(retryTimer);
    retryAction = action;
    let message = what + ": " + error.message + ".";
    if (error.retryAfterS) {
      const seconds = Math.min(error.retryAfterS, MAX_AUTO_RETRY_S);
      message += " Trying again in " + seconds + " s.";
      retryTimer = setTimeout(retry, seconds * 1000);
    }
    problemText.textContent = message;
    problem.hidden = false;
    statusLine.textContent = "";
  }

  function retry() {
    const action = retryAction;
    clearProblem();
    if (action) action();
  }

  function option(value, label) {
    const element = document.createElement("option");
    element.value = value;
    element.textContent = label;
    return element;
  }

  function text(className, value, dir) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = value;
    if (dir) element.dir = dir;
    return element;
  }

  function card(entry, listId) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card";
    button.dataset.itemId = entry.item_id;
    const price = entry.price === undefined || entry.price === null ? "" : " · $" + Number(entry.price).toFixed(2);
    button.append(
      // the catalog's words take their own direction (an Arabic title reads right to left)
      text("title", entry.title, "auto"),
      text("meta", (entry.category || "") + price),
      text("reason", entry.reason || ""),
      text("description", entry.description || "", "auto"),
    );
    button.addEventListener("click", () => viewItem(entry, listId));
    const item = document.createElement("li");
    item.append(button);
    return item;
  }

  function renderHistory() {
    const titles = (clicks[userSelect.value] || []).slice(-8).reverse();
    historyList.replaceChildren(...titles.map((title) => {
      const entry = document.createElement("li");
      entry.textContent = title;
      entry.dir = "auto";
      return entry;
    }));
    historyEmpty.hidden = titles.length > 0;
  }

  async function loadRecommendations() {
    const params = new URLSearchParams({ user_id: userSelect.value, k: "8" });
    params.set("diversity", diversityInput.value);
    if (categorySelect.value) params.set("category", categorySelect.value);
    const load = ++latestLoad;
    statusLine.textContent = "Loading…";
    renderHistory();
    try {
      const body = await getJson("/api/recommendations?" + params.toString());
      if (load !== latestLoad) return; // the shopper changed a setting meanwhile
      clearProblem();
      // a click names the list it came from, so it counts for the ranker version that made it
      list.replaceChildren(...body.items.map((entry) => card(entry, body.list_id)));
      list.dataset.version = String(Number(list.dataset.version) + 1);
      const kind = body.cold_start ? "new shopper: popular picks" : "personalised for you";
      statusLine.textContent = body.items.length
        ? body.items.length + " items, " + kind
        : categorySelect.value
          ? "Nothing to recommend in " + categorySelect.value + " yet: choose another category."
          : "Nothing to recommend yet. New items show here as soon as they are added.";
    } catch (error) {
      if (load === latestLoad) showProblem("Could not load recommendations", error, loadRecommendations);
    }
  }

  async function viewItem(entry, listId) {
    if (recording) return;
    const user = userSelect.value;
    recording = true;
    try {
      await getJson("/api/events", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: user, item_id: entry.item_id, event: "click", list_id: listId }),
      });
    } catch (error) {
      recording = false;
      showProblem("Your click on “" + entry.title + "” was not recorded", error, () => viewItem(entry, listId));
      return;
    }
    (clicks[user] = clicks[user] || []).push(entry.title);
    try {
      await loadRecommendations(); // until the new list shows, the old cards take no second click
    } finally {
      recording = false;
    }
    // The chosen card was replaced: keep a keyboard user's place at the top of the new list.
    if (!list.contains(document.activeElement) && document.activeElement === document.body) {
      const next = list.querySelector(".card");
      if (next) next.focus();
    }
  }

  /** Load the shop (shoppers, categories, then the list) once, however often it is asked for
   * while loading (Refresh, a filter or Try again pressed meanwhile). */
  function start() {
    if (!starting) starting = loadShop().finally(() => { starting = null; });
    return starting;
  }

  async function loadShop() {
    statusLine.textContent = "Loading…";
    let users, categories;
    try {
      [users, categories] = await Promise.all([getJson("/api/users?limit=30"), getJson("/api/categories")]);
    } catch (error) {
      showProblem("The shop could not load", error, start);
      return;
    }
    clearProblem();
    userSelect.append(option("visitor-" + Math.random().toString(36).slice(2, 8), "New visitor (no history)"));
    for (const user of users.users) userSelect.append(option(user, user));
    for (const name of categories.categories) categorySelect.append(option(name, name));
    started = true;
    await loadRecommendations();
  }

  /** Reload the list; before the shop has loaded once (the API was down), load the shop. */
  function refresh() {
    return started ? loadRecommendations() : start();
  }

  userSelect.addEventListener("change", refresh);
  categorySelect.addEventListener("change", refresh);
  diversityInput.addEventListener("input", () => {
    diversityValue.textContent = Number(diversityInput.value).toFixed(1);
  });
  diversityInput.addEventListener("change", refresh);
  byId("refresh").addEventListener("click", refresh);
  retryButton.addEventListener("click", retry);
  start();
})();
