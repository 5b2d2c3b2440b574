/*
 * The agent console: sign in with an agent token (kept in this tab's sessionStorage), follow the
 * queue live (server-sent events read with fetch, so the token travels in a header), open a
 * conversation, claim it, insert a suggested answer, reply, hand back to the bot or close.
 * Every text from the server is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "threefold-agent-token";
  var $ = (id) => document.getElementById(id);
  var state = { token: null, agent: null, selected: null, detail: null, stream: null, typingAt: 0 };
  var RECONNECT_MS = 1000; // after a dropped stream; doubles while the service stays down
  var MAX_RECONNECT_MS = 30000;
  var reconnectMs = RECONNECT_MS;

  // Replies can arrive out of order (a slow GET started before a claim answers after the one
  // started after it): each view renders only replies newer than the one it shows.
  var asked = { queue: 0, detail: 0 };
  var shown = { queue: 0, detail: 0 };
  function newest(view, reply) {
    var n = ++asked[view];
    return reply.then((data) => {
      if (n < shown[view]) return { stale: true };
      shown[view] = n;
      return { data: data };
    });
  }

  var el = window.threefoldConsole.el;
  var api = window.threefoldConsole.client(() => state.token);

  function ago(ts) {
    var s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function signIn(token) {
    state.token = token;
    return api.signInCheck(token, "/api/agent/me").then((me) => {
      if (state.agent) return; // signed in already: the form and a resumed sign-in crossed
      state.agent = me.agent;
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (error) {
        /* storage disabled: sign in again after a reload */
      }
      $("sign-in").hidden = true;
      $("console").hidden = false;
      $("whoami").textContent = "Signed in as " + me.agent;
      $("whoami").hidden = false;
      $("sign-out").hidden = false;
      refreshQueue();
      follow();
      setInterval(tick, 1000);
    });
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (error) {
      /* nothing stored */
    }
  }

  function signOut() {
    forgetToken();
    location.reload();
  }

  function follow() {
    // Server-sent events over fetch; reconnects after each stream ends or fails, backing off
    // (up to 30 s, and no sooner than a refusal's Retry-After) while the service stays down or
    // busy rather than retrying every second; each failed try refreshes the queue instead.
    var reconnect = () => setTimeout(follow, reconnectMs);
    fetch("/api/agent/events", { headers: { Authorization: "Bearer " + state.token } })
      .then((response) => {
        if (!response.ok || !response.body) {
          var retryAfterS = parseFloat(response.headers.get("Retry-After"));
          throw Object.assign(new Error("HTTP " + response.status), { retryAfterS: retryAfterS });
        }
        reconnectMs = RECONNECT_MS;
        $("live-state").textContent = "Live: new conversations appear here.";
        refreshQueue();
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        var pump = () =>
          reader.read().then((chunk) => {
            if (chunk.done) return;
            buffer += decoder.decode(chunk.value, { stream: true });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            blocks.forEach((block) => {
              var data = block
                .split("\n")
                .filter((line) => line.startsWith("data: "))
                .map((line) => line.slice(6));
              if (data.length) onEvent(JSON.parse(data[0]));
            });
            return pump();
          });
        return pump();
      })
      .catch((error) => {
        var busy = error.retryAfterS > 0; // a 503: e.g. the server's live connections all in use
        $("live-state").textContent = busy
          ? "Live updates paused (the server is busy): the queue refreshes now and then."
          : "Reconnecting…";
        reconnectMs = Math.min(Math.max(reconnectMs * 2, busy ? error.retryAfterS * 1000 : 0), MAX_RECONNECT_MS);
        refreshQueue(); // keep up meanwhile
        if (state.selected) openConversation(state.selected, false);
      })
      .finally(reconnect);
  }

  function onEvent(event) {
    if (event.type === "typing") {
      if (event.session_id === state.selected) {
        $("customer-typing").hidden = false;
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(() => ($("customer-typing").hidden = true), 4000);
      }
      return;
    }
    refreshQueue();
    if (event.session_id === state.selected) openConversation(state.selected, false);
  }

  function refreshQueue() {
    var both = Promise.all([
      api("GET", "/api/agent/conversations?status=waiting"),
      api("GET", "/api/agent/conversations?status=claimed"),
    ]);
    return newest("queue", both)
      .then((reply) => {
        if (reply.stale) return;
        var [waiting, claimed] = reply.data;
        renderItems($("waiting"), waiting, "Nobody is waiting.");
        renderItems($("claimed"), claimed, "No claimed conversations.");
        $("waiting-count").textContent = String(waiting.length);
      })
      .catch((error) => ($("live-state").textContent = "Could not load the queue: " + error.message));
  }

  function renderItems(list, items, emptyText) {
    // a keyboard user on an item keeps their place when the queue refreshes under them
    var focused = list.contains(document.activeElement) ? document.activeElement.dataset.sessionId : null;
    list.replaceChildren();
    if (!items.length) list.appendChild(el("li", { class: "empty" }, emptyText));
    items.forEach((item) => {
      var li = el("li");
      var button = el("button", { type: "button", "data-session-id": item.session_id });
      if (item.session_id === state.selected) button.setAttribute("aria-current", "true");
      var who = item.agent ? (item.agent === state.agent ? "you" : item.agent) : "unclaimed";
      button.appendChild(el("span", {}, "Customer " + item.session_id.slice(0, 6) + " · " + who));
      if (item.status === "waiting") {
        button.appendChild(
          el("span", { class: "meta", "data-since": item.waiting_since }, "waiting " + ago(item.waiting_since))
        );
      } else {
        var at = new Date(item.waiting_since * 1000).toLocaleTimeString();
        button.appendChild(el("span", { class: "meta" }, "handed off at " + at));
      }
      // the customer's words in a <bdi>: their own direction, inside the console's LTR line
      var last = el("span", { class: "last" });
      var left = item.left_messages || [];
      if (left.length) {
        last.append(left.length > 1 ? "Left " + left.length + " messages, the newest: " : "Left a message: ");
        last.append(el("bdi", {}, left[left.length - 1].text));
      } else if (item.last_message) last.append(el("bdi", {}, item.last_message.text));
      button.appendChild(last);
      button.addEventListener("click", () => openConversation(item.session_id, true));
      li.appendChild(button);
      list.appendChild(li);
      if (item.session_id === focused) button.focus();
    });
  }

  function tick() {
    document.querySelectorAll("[data-since]").forEach((node) => {
      node.textContent = "waiting " + ago(Number(node.dataset.since));
    });
    if (state.detail && state.detail.status === "waiting") {
      $("d-waiting").textContent = ago(state.detail.waiting_since);
    }
  }

  function openConversation(sessionId, focus) {
    if (sessionId !== state.selected) $("action-error").textContent = ""; // errors of another one
    state.selected = sessionId;
    document.querySelectorAll(".items button").forEach((b) => {
      if (b.dataset.sessionId === sessionId) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    });
    return newest("detail", api("GET", "/api/agent/conversations/" + sessionId))
      .then((reply) => {
        if (state.selected !== sessionId) return;
        if (!reply.stale) renderDetail(reply.data);
        // a newer reply may have drawn it first: the title takes the focus all the same
        if (focus && !$("detail-body").hidden) $("detail-title").focus();
      })
      .catch((error) => ($("action-error").textContent = error.message));
  }

  function renderDetail(d) {
    state.detail = d;
    var mine = d.status === "claimed" && d.agent === state.agent;
    $("detail-body").hidden = false;
    $("detail-title").textContent = "Customer " + d.session_id.slice(0, 6);
    $("d-status").textContent =
      d.status === "claimed" ? "claimed by " + (mine ? "you" : d.agent) : d.status;
    $("d-waiting-label").textContent = d.status === "waiting" ? "Waiting" : "Handed off";
    $("d-waiting").textContent =
      d.status === "waiting" ? ago(d.waiting_since) : new Date(d.waiting_since * 1000).toLocaleTimeString();
    var page = $("d-page");
    page.replaceChildren();
    if (d.page_url && /^https?:/.test(d.page_url)) {
      page.appendChild(el("a", { href: d.page_url, target: "_blank", rel: "noopener noreferrer" }, d.page_url));
    } else page.textContent = d.page_url || "unknown";
    // every message the customer left for the team, oldest first, each on its line with its time
    var leftMessages = d.left_messages || [];
    $("d-left").hidden = !leftMessages.length;
    $("d-left").replaceChildren(leftMessages.length > 1 ? "Messages left for the team:" : "Message left for the team:");
    leftMessages.forEach((m) => {
      $("d-left").append(el("br"), m.ts ? new Date(m.ts * 1000).toLocaleTimeString() + " · " : "");
      $("d-left").append(el("bdi", {}, m.text));
    });
    if (d.status !== "claimed") $("customer-typing").hidden = true;
    $("claim").disabled = d.status !== "waiting";
    $("release").disabled = !mine;
    $("close").disabled = !mine;
    $("reply").disabled = !mine;
    $("send").disabled = !mine;
    $("reply").placeholder = mine ? "Type a reply, or insert a suggested answer" : "Claim the conversation to reply";
    if (d.session_expired) $("action-error").textContent = "The customer's session has expired.";

    renderTranscript(d.session_id, d.transcript);

    // rebuilt only when the candidates change, so a focused "Insert" button keeps its focus
    var list = $("suggested");
    var candidatesKey = JSON.stringify([d.session_id, mine, d.candidates]);
    if (list.dataset.key === candidatesKey) return;
    list.dataset.key = candidatesKey;
    list.replaceChildren();
    if (!d.candidates.length) list.appendChild(el("li", {}, "The bot had no candidates."));
    d.candidates.forEach((c) => {
      var li = el("li");
      li.appendChild(el("span", { class: "q", dir: "auto" }, c.question));
      li.appendChild(el("span", { class: "a", dir: "auto" }, c.answer));
      var insert = el("button", { type: "button", class: "quiet", "aria-label": "Insert answer: " + c.question }, "Insert");
      insert.disabled = !mine;
      insert.addEventListener("click", () => {
        var box = $("reply");
        box.value = box.value ? box.value + "\n" + c.answer : c.answer;
        box.focus();
      });
      li.appendChild(insert);
      list.appendChild(li);
    });
  }

  function isAtBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  }

  // Whether the transcript shows its newest turn, as of the agent's last scroll (or ours). A
  // narrower window (a phone, a window made smaller, the on-screen keyboard) wraps the turns
  // onto more lines: the log grows under a still scrollTop, and would leave the bottom.
  var pinnedToBottom = true;
  function keepPinned() {
    var log = $("transcript");
    if (pinnedToBottom && !isAtBottom(log)) log.scrollTop = log.scrollHeight;
  }

  // Turns already shown stay in place (an agent's selection and reading position survive a
  // refresh): the session keeps its last turns only, so turns that left that window are
  // removed from the top (the view keeps its place), new turns are appended, and the log
  // follows them only if it was at the bottom. Another conversation is drawn afresh.
  function renderTranscript(sessionId, turns) {
    var log = $("transcript");
    var keys = turns.map((turn) => sessionId + "/" + turn.turn_id);
    var atBottom = pinnedToBottom || isAtBottom(log);
    var removedHeight = 0;
    var gap = parseFloat(getComputedStyle(log).rowGap) || 0;
    Array.from(log.children).forEach((node) => {
      if (keys.indexOf(node.dataset.key) < 0) {
        removedHeight += node.offsetHeight + gap;
        node.remove();
      }
    });
    var onScreen = Array.prototype.map.call(log.children, (node) => node.dataset.key);
    var kept = onScreen.length > 0 && onScreen.every((key, i) => key === keys[i]);
    if (!kept) log.replaceChildren();
    var from = kept ? onScreen.length : 0;
    turns.slice(from).forEach((turn, i) => {
      // dir=auto: each turn reads in the direction of its own text; the name has a dir of its
      // own, so it neither sets the turn's direction nor takes it
      var node = el("div", { class: "turn " + turn.role, dir: "auto" });
      node.dataset.key = keys[from + i];
      var who = turn.role === "user" ? "Customer" : turn.role === "agent" ? turn.agent : "Bot";
      node.appendChild(el("span", { class: "who", dir: "auto" }, who));
      node.appendChild(document.createTextNode(turn.text));
      log.appendChild(node);
    });
    if (!kept || atBottom) log.scrollTop = log.scrollHeight;
    else if (removedHeight) log.scrollTop -= removedHeight; // #transcript: overflow-anchor none
  }

  function act(path, body) {
    $("action-error").textContent = "";
    var done = false;
    return api("POST", "/api/agent/conversations/" + state.selected + path, body)
      .then(() => (done = true))
      .catch((error) => ($("action-error").textContent = error.message))
      .then(() => openConversation(state.selected, false))
      .then(refreshQueue)
      .then(() => done);
  }

  document.addEventListener("DOMContentLoaded", () => {
    var stopResuming = () => {};
    $("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      stopResuming();
      $("sign-in-error").textContent = "";
      signIn($("token").value.trim()).catch((error) => {
        if (error.stale) return; // a later sign-in took over and says how it went
        $("sign-in-error").textContent =
          error.status === 403 ? "That token belongs to no agent. Check it and try again." : error.message;
      });
    });
    $("sign-out").addEventListener("click", signOut);
    $("claim").addEventListener("click", () =>
      act("/claim").then((claimed) => claimed && $("reply").focus())
    );
    $("release").addEventListener("click", () => act("/release"));
    $("close").addEventListener("click", () => act("/close"));
    $("reply-form").addEventListener("submit", (event) => {
      event.preventDefault();
      var text = $("reply").value.trim();
      if (!text || state.sending) return; // one reply at a time: a second Send is no duplicate
      state.sending = true;
      $("send").disabled = true;
      act("/messages", { text: text })
        .then((sent) => {
          if (sent) $("reply").value = "";
          $("reply").focus();
        })
        .finally(() => {
          state.sending = false; // also when reloading the conversation failed
          var d = state.detail;
          $("send").disabled = !(d && d.status === "claimed" && d.agent === state.agent);
        });
    });
    $("reply").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("reply-form").requestSubmit();
    });
    $("reply").addEventListener("input", () => {
      var now = Date.now();
      if (!state.selected || now - state.typingAt < 2000) return;
      state.typingAt = now;
      api("POST", "/api/agent/conversations/" + state.selected + "/typing").catch(() => {});
    });
    var log = $("transcript");
    log.addEventListener("scroll", () => (pinnedToBottom = isAtBottom(log)));
    // the log's own box changes width with the window; its turns change height as they wrap
    if (window.ResizeObserver) new ResizeObserver(keepPinned).observe(log);
    window.addEventListener("resize", keepPinned);
    if (window.visualViewport) window.visualViewport.addEventListener("resize", keepPinned);
    stopResuming = window.threefoldConsole.resumeKept(TOKEN_KEY, signIn, forgetToken);
  });
})();
