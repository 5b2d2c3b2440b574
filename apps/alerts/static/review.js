// Analysts' review: sign in with a token, correct scored headlines, judge alerts.
// The token stays in this tab (sessionStorage). All text goes in via textContent.
"use strict";

(() => {
  const REFRESH_MS = 15000;
  const TOKEN_KEY = "threefold.alerts.analyst";
  const VERDICT_WORDS = { false_alarm: "false alarm", true_alarm: "true alarm" };
  const VERDICTS_PER_CALL = 50; // alert ids per GET /api/verdicts (it takes up to 100)
  const $ = (id) => document.getElementById(id);
  const ui = {
    signin: $("signin"), token: $("analyst-token"), signedIn: $("signed-in"), name: $("analyst-name"),
    signout: $("signout"), message: $("review-message"), empty: $("headlines-empty"),
    table: $("headlines"), body: document.querySelector("#headlines tbody"), alerts: $("alerts"),
    paused: $("headlines-paused"),
  };
  let token = sessionStorage.getItem(TOKEN_KEY);
  let labels = { sentiment: ["negative", "neutral", "positive"], topic: [] };
  let timer = null;
  let resumeTimer = null;
  const verdicts = new Map(); // alert_id -> the stored verdict, while signed in

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function tell(text, kind) {
    ui.message.textContent = text;
    ui.message.dataset.kind = kind || "info";
  }

  /** fetch JSON; throws an Error whose message says what went wrong, in words. */
  async function call(method, url, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
    } catch (error) {
      throw new Error("the dashboard server did not answer: it may be down, or the network dropped");
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = {};
    }
    if (!response.ok) {
      const error = new Error("the server answered HTTP " + response.status + (data.message ? ": " + data.message : ""));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function renderSignedIn(name) {
    ui.signin.hidden = Boolean(name);
    ui.signedIn.hidden = !name;
    ui.name.textContent = name ? "Signed in as " + name + "." : "";
    if (name) document.body.dataset.analyst = name;
    else delete document.body.dataset.analyst;
  }

  /** The analyst whose token `candidate` is, the token in use when asked. The answer, a name or a
   * refusal, counts only while `candidate` is still in use: after a sign-in with the form or a
   * sign-out meanwhile it is stale, and this rejects with `stale` set (the caller changes nothing). */
  async function analystFor(candidate) {
    let me = null;
    let failure = null;
    try {
      me = await call("GET", "/api/analyst");
    } catch (error) {
      failure = error;
    }
    if (token !== candidate) throw Object.assign(new Error("another sign-in took over"), { stale: true });
    if (failure) throw failure;
    return me.analyst;
  }

  async function signIn(candidate) {
    clearTimeout(resumeTimer);
    token = candidate;
    try {
      const name = await analystFor(candidate);
      sessionStorage.setItem(TOKEN_KEY, candidate);
      renderSignedIn(name);
      return name;
    } catch (error) {
      if (!error.stale) {
        token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        renderSignedIn(null);
      }
      throw error;
    }
  }

  /** One task's menu: the model's label marked "(model)", the stored correction chosen. */
  function select(task, options, predicted, saved, headline) {
    const id = "fix-" + task + "-" + ui.body.children.length;
    const label = el("label", task === "sentiment" ? "Sentiment" : "Topic", "cell-label");
    label.htmlFor = id;
    const box = el("select");
    box.id = id;
    box.dataset.task = task;
    const current = saved ? saved.label : predicted || "";
    box.dataset.current = current;
    box.setAttribute("aria-description", "for: " + headline);
    for (const option of new Set([...options, predicted, current].filter(Boolean))) {
      const item = el("option", option + (option === predicted ? " (model)" : ""));
      item.value = option;
      item.selected = option === current;
      box.append(item);
    }
    const cell = [label, box];
    if (saved) cell.push(el("span", "saved by " + saved.analyst, "saved-note"));
    return cell;
  }

  const unsaved = (row) => [...row.querySelectorAll("select")].some((box) => box.value !== box.dataset.current);

  function renderHeadlines(headlines) {
    ui.body.replaceChildren();
    for (const record of headlines) {
      const row = document.createElement("tr");
      row.dataset.messageId = record.id;
      row.dataset.textDigest = record.text_digest;
      const saved = record.corrections || {};
      const text = el("td", record.text, "headline");
      text.dir = "auto"; // an Arabic or Hebrew headline reads right to left, at the right
      const sentiment = el("td");
      sentiment.append(...select("sentiment", labels.sentiment, record.sentiment, saved.sentiment, record.text));
      const topic = el("td");
      topic.append(...select("topic", labels.topic, record.topic, saved.topic, record.text));
      const models = record.models || {};
      const versions = el("td", "sentiment " + (models.sentiment || "?") + " · topic " + (models.topic || "?"), "models models-cell");
      const save = el("button", "Save", "save-button");
      save.type = "button";
      save.setAttribute("aria-label", "Save correction: " + record.text);
      save.addEventListener("click", () => saveRow(row));
      const saveCell = el("td", undefined, "save-cell");
      saveCell.append(save);
      row.append(text, sentiment, topic, versions, saveCell);
      ui.body.append(row);
    }
    ui.table.hidden = headlines.length === 0;
    ui.empty.hidden = headlines.length > 0;
    ui.empty.textContent = "No scored headlines yet: they appear once the consumer scores news.";
  }

  async function loadHeadlines() {
    clearTimeout(timer);
    timer = setTimeout(loadHeadlines, REFRESH_MS);
    if (token) loadVerdicts();
    if (ui.table.contains(document.activeElement)) return; // never re-render under the keyboard
    const pending = [...ui.body.children].some(unsaved);
    ui.paused.hidden = !pending;
    if (pending) return; // an unsaved choice stays until it is saved or set back
    try {
      const data = await call("GET", "/api/headlines?limit=20");
      if (data.labels) labels = data.labels;
      if (![...ui.body.children].some(unsaved)) renderHeadlines(data.headlines || []);
    } catch (error) {
      ui.empty.hidden = false;
      ui.empty.textContent = "Could not load the headlines: " + error.message + ". Retrying every " + REFRESH_MS / 1000 + " s.";
    }
  }

  async function saveRow(row) {
    if (!token) {
      tell("Sign in with your analyst token to save corrections.", "error");
      ui.token.focus();
      return;
    }
    const changed = [...row.querySelectorAll("select")].filter((box) => box.value !== box.dataset.current);
    if (!changed.length) {
      tell("Nothing to save: choose a different sentiment or topic first.", "error");
      return;
    }
    try {
      const stored = [];
      for (const box of changed) {
        const data = await call("POST", "/api/corrections", {
          message_id: row.dataset.messageId, text_digest: row.dataset.textDigest, task: box.dataset.task, label: box.value,
        });
        box.dataset.current = data.correction.label;
        stored.push(data.correction);
      }
      const said = stored.map((c) => c.task + " " + c.label).join(" and ");
      tell("Saved: " + said + " for “" + stored[0].text + "”.", "info");
      if (![...ui.body.children].some(unsaved)) ui.paused.hidden = true;
    } catch (error) {
      tell("Could not save the correction: " + error.message + ".", "error");
    }
  }

  /** Show an alert's stored verdict: the chosen button pressed, who said so. */
  function showVerdict(record) {
    verdicts.set(record.alert_id, record);
    const item = [...ui.alerts.querySelectorAll("li.alert")].find((li) => li.dataset.alertId === record.alert_id);
    if (item) markVerdict(item, record);
  }

  function markVerdict(item, record) {
    for (const button of item.querySelectorAll("button[data-verdict]")) {
      button.setAttribute("aria-pressed", String(button.dataset.verdict === record.verdict));
    }
    item.querySelector(".verdict-status").textContent =
      "Marked a " + VERDICT_WORDS[record.verdict] + " by " + record.analyst + ".";
  }

  /** The stored verdicts of these alerts, VERDICTS_PER_CALL ids a request (the API's bound). */
  async function loadVerdictsOf(alertIds) {
    for (let start = 0; start < alertIds.length; start += VERDICTS_PER_CALL) {
      const query = alertIds.slice(start, start + VERDICTS_PER_CALL).map((id) => "alert_id=" + encodeURIComponent(id));
      try {
        const data = await call("GET", "/api/verdicts?" + query.join("&"));
        for (const record of data.verdicts || []) showVerdict(record);
      } catch (error) {
        return; // the sign-in check says when the token is refused; the buttons still work
      }
    }
  }

  /** The verdicts of the alerts on the page (not every verdict ever stored). */
  function loadVerdicts() {
    const shown = [...ui.alerts.querySelectorAll("li.alert")].map((item) => item.dataset.alertId);
    return loadVerdictsOf(shown.filter(Boolean));
  }

  // alerts the live feed or a refresh adds later show their verdict too: the one known, or the
  // one stored, asked for at once
  new MutationObserver((changes) => {
    const unknown = [];
    for (const change of changes) {
      for (const item of change.addedNodes) {
        const alertId = item.dataset && item.dataset.alertId;
        if (!alertId) continue;
        const record = verdicts.get(alertId);
        if (record) markVerdict(item, record);
        else unknown.push(alertId);
      }
    }
    if (token && unknown.length) loadVerdictsOf(unknown);
  }).observe(ui.alerts, { childList: true });

  async function judge(button) {
    const item = button.closest("li.alert");
    const status = item.querySelector(".verdict-status");
    try {
      const data = await call("POST", "/api/alerts/" + encodeURIComponent(item.dataset.alertId) + "/verdict", { verdict: button.dataset.verdict });
      showVerdict(data.verdict);
      tell("Alert marked a " + VERDICT_WORDS[data.verdict.verdict] + ".", "info");
    } catch (error) {
      status.textContent = "Not saved: " + error.message + ".";
      tell("Could not save the verdict: " + error.message + ".", "error");
    }
  }

  ui.signin.addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = ui.token.value.trim();
    ui.token.value = "";
    try {
      const name = await signIn(candidate);
      tell("Signed in as " + name + ". Correct a headline below or judge an alert.", "info");
      loadHeadlines(); // with the corrections and verdicts analysts saved
      ui.signout.focus();
    } catch (error) {
      if (error.stale) return; // a later sign-in (or sign-out) took over and says how it went
      tell("Could not sign in: " + error.message + ".", "error");
      ui.token.focus();
    }
  });
  ui.signout.addEventListener("click", () => {
    clearTimeout(resumeTimer);
    verdicts.clear();
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    renderSignedIn(null);
    tell("Signed out.", "info");
    ui.token.focus();
  });
  ui.alerts.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-verdict]");
    if (button) judge(button);
  });

  /** After a reload, confirm the token this tab kept. Refused: signed out. Not answered (the
   * API is down): kept, and tried again every REFRESH_MS until the server answers. An answer that
   * comes after the analyst signed in with the form or signed out is ignored, whatever it says. */
  async function resume() {
    clearTimeout(resumeTimer);
    try {
      const name = await analystFor(token);
      renderSignedIn(name);
      if (ui.message.dataset.kind === "error") tell("Signed in as " + name + " again.", "info");
    } catch (error) {
      if (error.stale) return;
      if (error.status === 401 || error.status === 403) {
        token = null;
        sessionStorage.removeItem(TOKEN_KEY);
        renderSignedIn(null);
        tell("Your analyst session ended: sign in again.", "error");
        return;
      }
      tell("Could not check your analyst sign-in: " + error.message + ". Trying again in " + REFRESH_MS / 1000 + " s.", "error");
      resumeTimer = setTimeout(resume, REFRESH_MS);
    }
  }

  if (token) resume();
  loadHeadlines();
})();
