/*
 * threefold FAQ chat widget: one script tag adds a chat bubble to any page.
 *
 *   <script src="https://bot.example.com/static/widget.js"
 *           data-api="https://bot.example.com" data-title="Help"></script>
 *
 * data-api   base URL of the QA bot API (default: the origin the script was loaded from)
 * data-title heading of the chat panel (default "Questions? Ask us")
 *
 * A <threefold-chat> custom element with its own shadow DOM (page styles do not leak in or
 * out). Every piece of text from the server or the user is rendered with textContent, never
 * as HTML. The session id is kept in localStorage so a reload restores the conversation.
 *
 * After a handoff the widget follows the conversation live (server-sent events, or long
 * polling where EventSource is missing): "connected to <name>", the agent's messages and
 * typing, the end of the conversation (the bot answers again), and when nobody claims it in
 * time, an honest notice with a form to leave a message for the team. When the live connection
 * is refused (the server's live connections all in use, a proxy's error during a deploy), the
 * widget refreshes the conversation every few seconds instead and goes live again later.
 *
 * Each message shows its time; an answer shows the FAQ it came from and keeps the customer's
 * vote (one per answer, changeable). While the bot answers, a typing indicator shows. When the
 * API cannot be reached, or has not answered within 15 s, the message stays as a "not sent"
 * bubble with a Retry button; a 503 with Retry-After is retried automatically. A conversation that cannot be loaded after a reload
 * is announced in the log ("Load them again") and loaded by itself once the API answers.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : "";
  var defaults = {
    api: (script && script.dataset.api) || scriptOrigin || location.origin,
    title: (script && script.dataset.title) || "Questions? Ask us",
  };

  var STYLE = [
    ":host { all: initial; position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2328; }",
    "* { box-sizing: border-box; }",
    ".launcher { width: 60px; height: 60px; border-radius: 50%; border: 0; cursor: pointer;",
    "  background: #2f5d50; color: #fff; box-shadow: 0 6px 18px rgba(0,0,0,.25);",
    "  display: flex; align-items: center; justify-content: center; }",
    ".launcher svg { width: 28px; height: 28px; fill: currentColor; }",
    ".launcher:focus-visible, button:focus-visible, input:focus-visible, textarea:focus-visible {",
    "  outline: 3px solid #f2b705; outline-offset: 2px; }",
    // the panel scrolls as a whole only when its parts cannot all fit (zoomed in, short screens):
    // the conversation keeps at least 40 % of it, and nothing is cut off
    ".panel { position: absolute; right: 0; bottom: 76px; width: 360px; max-width: calc(100vw - 40px);",
    "  height: 520px; max-height: calc(100vh - 120px); max-height: calc(100dvh - 120px);",
    "  background: #fff; border-radius: 14px; box-shadow: 0 12px 40px rgba(0,0,0,.28);",
    "  display: flex; flex-direction: column; overflow-x: hidden; overflow-y: auto; }",
    ".panel > * { flex: none; }",
    ".panel[hidden] { display: none; }",
    ".header { background: #2f5d50; color: #fff; padding: 12px 14px; display: flex;",
    "  align-items: center; justify-content: space-between; gap: 8px; }",
    "h2 { margin: 0; font-size: 16px; font-weight: 600; min-width: 0; overflow-wrap: anywhere; }",
    ".close { flex: none; background: transparent; border: 0; color: #fff; font-size: 22px; line-height: 1;",
    "  cursor: pointer; min-width: 36px; min-height: 36px; padding: 0 4px; border-radius: 8px; }",
    ".panel > .log { flex: 1 1 0; min-height: 40%; overflow-y: auto; padding: 12px; display: flex;",
    "  flex-direction: column; gap: 8px; background: #f6f7f6; }",
    // dir=auto on each bubble: an Arabic or Hebrew message reads right to left, in a LTR widget
    ".msg { max-width: 85%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; text-align: start; }",
    ".msg.user { align-self: flex-end; background: #2f5d50; color: #fff; border-bottom-right-radius: 4px; }",
    ".msg.bot { align-self: flex-start; background: #fff; border: 1px solid #dde2df;",
    "  border-bottom-left-radius: 4px; }",
    ".msg.error { border-color: #c9372c; color: #8a1c13; }",
    ".msg.agent { align-self: flex-start; background: #e8f0fb; border: 1px solid #b9cdea;",
    "  border-bottom-left-radius: 4px; }",
    ".msg[data-time]::after { content: attr(data-time); display: block; font-size: 11px;",
    "  opacity: .75; direction: ltr; unicode-bidi: isolate; text-align: right; margin-top: 2px; }",
    ".msg.pending { opacity: .8; border: 1px dashed #fff; }",
    ".source { align-self: flex-start; margin: -4px 0 0 4px; font-size: 12px; color: #57606a;",
    "  max-width: 85%; overflow-wrap: anywhere; }",
    ".dots { align-self: flex-start; background: #fff; border: 1px solid #dde2df; border-radius: 12px;",
    "  padding: 10px 12px; display: flex; gap: 4px; }",
    ".dots i { width: 7px; height: 7px; border-radius: 50%; background: #57606a; opacity: .4; }",
    "@media (prefers-reduced-motion: no-preference) {",
    "  .dots i { animation: tf-blink 1.2s infinite; }",
    "  .dots i:nth-of-type(2) { animation-delay: .2s; } .dots i:nth-of-type(3) { animation-delay: .4s; } }",
    "@keyframes tf-blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }",
    ".failure { align-self: stretch; display: flex; flex-wrap: wrap; gap: 8px; align-items: center;",
    "  padding: 8px 10px; border: 1px solid #c9372c; border-radius: 10px; background: #fff;",
    "  color: #8a1c13; font-size: 14px; }",
    ".failure p { margin: 0; flex: 1 1 200px; }",
    ".retry { font: inherit; min-height: 40px; padding: 0 14px; border: 1px solid #8a1c13;",
    "  border-radius: 10px; background: #fff; color: #8a1c13; cursor: pointer; }",
    ".msg.agent .who { display: block; font-size: 12px; font-weight: 600; color: #1d4f91; }",
    ".typing { font-size: 13px; color: #57606a; padding: 0 14px 6px; background: #f6f7f6; }",
    ".typing[hidden], .leave[hidden] { display: none; }",
    ".leave { display: flex; flex-direction: column; gap: 6px; padding: 10px; background: #fff;",
    "  border-top: 1px solid #f2d68a; }",
    ".leave textarea { font: inherit; padding: 8px 10px; border: 1px solid #b8c2bd; border-radius: 10px;",
    "  min-height: 60px; resize: vertical; }",
    ".leave label { font-size: 14px; }",
    ".suggestions { display: flex; flex-direction: column; gap: 6px; align-self: stretch; }",
    ".suggestion { text-align: start; background: #fff; color: #2f5d50; border: 1px solid #2f5d50;",
    "  border-radius: 10px; padding: 8px 10px; cursor: pointer; font: inherit; min-height: 40px; }",
    ".suggestion:hover:enabled { background: #eaf2ef; }",
    ".suggestion:disabled { color: #57606a; border-color: #b8c2bd; cursor: default; }",
    ".feedback { display: flex; gap: 6px; align-items: center; font-size: 13px; color: #57606a; }",
    ".feedback button { border: 1px solid #cfd6d2; background: #fff; border-radius: 8px;",
    "  min-width: 40px; min-height: 32px; cursor: pointer; font-size: 16px; }",
    ".feedback svg { width: 18px; height: 18px; fill: #2f5d50; vertical-align: middle; }",
    ".feedback svg.down { transform: rotate(180deg); }",
    ".feedback button[aria-pressed='true'] { background: #eaf2ef; border-color: #2f5d50; }",
    ".feedback button:disabled { cursor: default; }",
    ".notice { margin: 0; padding: 8px 12px; background: #fff4d6; color: #5c4200; font-size: 14px;",
    "  border-top: 1px solid #f2d68a; }",
    ".notice[hidden] { display: none; }",
    // with large text the field takes its own line and Send goes under it, to the right
    "form { display: flex; flex-wrap: wrap; gap: 8px; padding: 10px; border-top: 1px solid #dde2df;",
    "  background: #fff; }",
    "input { flex: 1 1 9em; min-width: 0; font: inherit; padding: 10px 12px; border: 1px solid #b8c2bd;",
    "  border-radius: 10px; }",
    ".send { font: inherit; padding: 0 14px; min-height: 44px; border: 0; border-radius: 10px;",
    "  background: #2f5d50; color: #fff; cursor: pointer; }",
    "form:not(.leave) > .send { margin-left: auto; }",
    ".send:disabled { opacity: .6; cursor: progress; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden;",
    "  clip: rect(0 0 0 0); white-space: nowrap; }",
    // short screens (a laptop at 200 % zoom, a phone on its side): the panel takes the height of
    // the screen instead of sitting above the launcher, which hides while it is open, and the
    // header, notice and form are compact, so the conversation keeps the room
    "@media (max-height: 560px) {",
    "  :host { right: 12px; bottom: 12px; }",
    "  .panel { position: fixed; top: 8px; right: 8px; bottom: 8px; height: auto; max-height: none;",
    "    width: 360px; max-width: calc(100vw - 16px); }",
    "  :host([open]) .launcher { display: none; }",
    "  .header { padding: 4px 8px 4px 12px; }",
    "  h2 { font-size: 15px; }",
    "  .notice { padding: 4px 12px; font-size: 13px; }",
    "  .typing { padding-bottom: 2px; }",
    "  form, .leave { padding: 6px 8px; }",
    "  input { padding: 6px 10px; }",
    "  .send { min-height: 40px; }",
    "  .leave textarea { min-height: 44px; }",
    "  .panel > .log { padding: 8px 10px; }",
    "}",
    "@media (max-width: 480px) {",
    "  :host { right: 12px; bottom: 12px; }",
    "  .panel { position: fixed; inset: 0; width: 100vw; max-width: none; height: 100vh; height: 100dvh;",
    "    max-height: none; border-radius: 0; }",
    "  :host([open]) .launcher { display: none; }",
    "}",
    "@media (prefers-reduced-motion: no-preference) { .launcher { transition: transform .15s; }",
    "  .launcher:hover { transform: scale(1.05); } }",
  ].join("\n");

  // Material Design "thumb_up" (Apache-2.0); thumbs down is the same shape rotated.
  var THUMB_PATH =
    "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
    "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23" +
    ".14-.47.14-.73v-2z";
  var ICON_PATH =
    "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2zm3 6v2h2v-2H7zm4 0v2h2v-2h-2zm4 0v2h2v-2h-2z";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var GREETING = "Hi! Ask me anything about orders, shipping, returns or your account.";
  var AUTO_RETRIES = 3; // a 503 with Retry-After is retried this often before the Retry button
  var MAX_RETRY_WAIT_S = 30;
  var RESTORE_RETRY_S = [2, 5, 10, 30, 60]; // after a reload, while the conversation cannot load
  var LIVE_RETRY_FIRST_S = 3; // after the live connection failed: refresh, then try it again
  var LIVE_RETRY_MAX_S = 30; // the wait doubles up to this while it keeps failing
  var REQUEST_TIMEOUT_S = 15; // an API that has not answered by then counts as failed, not waited on

  /** "14:05" for a unix time in seconds (now when missing), in the reader's locale. */
  function clock(ts) {
    var date = ts ? new Date(ts * 1000) : new Date();
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function stamp(node, ts) {
    var date = ts ? new Date(ts * 1000) : new Date();
    node.dataset.time = clock(ts);
    node.title = date.toLocaleString();
    return node;
  }

  function icon(d, extraClass) {
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    if (extraClass) svg.setAttribute("class", extraClass);
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  class ThreefoldChat extends HTMLElement {
    constructor() {
      super();
      this.api = (this.getAttribute("api") || defaults.api).replace(/\/+$/, "");
      this.heading = this.getAttribute("heading") || defaults.title;
      this.storageKey = "threefold-chat:session:" + this.api;
      this.busy = false;
      var root = this.attachShadow({ mode: "open" });
      root.appendChild(el("style", {}, STYLE));

      this.launcher = el("button", {
        class: "launcher",
        type: "button",
        "aria-label": "Open chat: " + this.heading,
        "aria-expanded": "false",
        "aria-controls": "tf-panel",
        "aria-haspopup": "dialog",
      });
      this.launcher.appendChild(icon(ICON_PATH, ""));

      this.panel = el("div", {
        class: "panel",
        id: "tf-panel",
        role: "dialog",
        "aria-modal": "false",
        "aria-labelledby": "tf-title",
      });
      this.panel.hidden = true;
      // a plain <div>: a <header> here would be a second banner landmark on the host page
      var header = el("div", { class: "header" });
      header.appendChild(el("h2", { id: "tf-title" }, this.heading));
      this.closeButton = el("button", { class: "close", type: "button", "aria-label": "Close chat" }, "×");
      header.appendChild(this.closeButton);
      this.log = el("div", {
        class: "log",
        role: "log",
        "aria-live": "polite",
        "aria-relevant": "additions",
        "aria-label": "Conversation",
        tabindex: "0",
      });
      this.notice = el("p", { class: "notice", role: "status" });
      this.notice.hidden = true;
      this.typingLine = el("p", { class: "typing", "aria-live": "polite" });
      this.typingLine.hidden = true;
      this.leaveForm = this.buildLeaveForm();
      this.form = el("form", { "aria-label": "Send a question" });
      var label = el("label", { class: "sr-only", for: "tf-input" }, "Your question");
      this.input = el("input", {
        id: "tf-input",
        type: "text",
        maxlength: "1000",
        autocomplete: "off",
        placeholder: "Type your question…",
        enterkeyhint: "send",
        dir: "auto",
      });
      this.sendButton = el("button", { class: "send", type: "submit", "aria-label": "Send message" }, "Send");
      this.form.append(label, this.input, this.sendButton);
      this.panel.append(header, this.log, this.typingLine, this.notice, this.leaveForm, this.form);
      root.append(this.panel, this.launcher);

      // where the panel covers the whole screen (phones, 400 % zoom) it is modal: Tab goes round
      // inside it rather than to the page hidden behind it; Escape and × close it
      this.fullScreen = window.matchMedia("(max-width: 480px)");
      this.fullScreen.addEventListener("change", () => this.setModal());
      this.panel.addEventListener("keydown", (event) => this.keepTabInside(event));
      this.launcher.addEventListener("click", () => this.toggle());
      this.closeButton.addEventListener("click", () => this.close());
      // Escape closes the open panel, also when focus has left it (e.g. a button just disabled).
      document.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && !this.panel.hidden) {
          event.preventDefault();
          this.close();
        }
      });
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        var text = this.input.value.trim();
        if (text) this.send(text, null);
      });
      this.input.addEventListener("input", () => this.sayTyping());
      this.live = null; // the open EventSource, long-polling loop or refresh timer (liveLost)
      this.agentState = null;
    }

    buildLeaveForm() {
      var form = el("form", { class: "leave", "aria-label": "Leave a message for our team" });
      form.hidden = true;
      var label = el("label", { for: "tf-leave" }, "Your message for our team");
      var box = el("textarea", { id: "tf-leave", maxlength: "1000", dir: "auto" });
      var button = el("button", { class: "send", type: "submit" }, "Leave message");
      form.append(label, box, button);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        var text = box.value.trim();
        if (!text) return;
        button.disabled = true;
        this.post("/api/sessions/" + this.sessionId + "/message-for-team", { text: text })
          .then(() => {
            this.addUser(text);
            form.hidden = true;
            this.setNotice("Thank you. Your message is stored and our team will read it.");
          })
          .catch((error) => {
            button.disabled = false;
            this.setNotice("Your message could not be stored: " + error.message);
          });
      });
      return form;
    }

    connectedCallback() {
      this.restore();
    }

    get sessionId() {
      try {
        return localStorage.getItem(this.storageKey);
      } catch (error) {
        return null;
      }
    }

    set sessionId(value) {
      try {
        if (value) localStorage.setItem(this.storageKey, value);
        else localStorage.removeItem(this.storageKey);
      } catch (error) {
        /* storage disabled: the conversation just does not survive a reload */
      }
    }

    toggle() {
      if (this.panel.hidden) this.open();
      else this.close();
    }

    setModal() {
      this.panel.setAttribute("aria-modal", String(this.fullScreen.matches));
    }

    keepTabInside(event) {
      if (event.key !== "Tab" || !this.fullScreen.matches) return;
      var stops = Array.from(
        this.panel.querySelectorAll("button, input, textarea, select, [tabindex='0']")
      ).filter((node) => !node.disabled && node.getClientRects().length);
      if (!stops.length) return;
      var first = stops[0];
      var last = stops[stops.length - 1];
      var active = this.shadowRoot.activeElement;
      if (event.shiftKey && (active === first || !this.panel.contains(active))) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && (active === last || !this.panel.contains(active))) {
        event.preventDefault();
        first.focus();
      }
    }

    open() {
      this.setModal();
      this.panel.hidden = false;
      this.setAttribute("open", "");
      this.launcher.setAttribute("aria-expanded", "true");
      this.launcher.setAttribute("aria-label", "Close chat: " + this.heading);
      this.greet();
      this.scrollDown(); // the log had no height while hidden: show the latest message
      this.input.focus();
    }

    close() {
      this.panel.hidden = true;
      this.removeAttribute("open");
      this.launcher.setAttribute("aria-expanded", "false");
      this.launcher.setAttribute("aria-label", "Open chat: " + this.heading);
      this.launcher.focus();
    }

    greet() {
      if (!this.log.querySelector(".greeting")) {
        var greeting = this.addBot(GREETING, "greeting");
        this.log.insertBefore(greeting, this.log.firstChild);
      }
    }

    scrollDown() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    addUser(text, ts) {
      var node = stamp(el("div", { class: "msg user", dir: "auto" }, text), ts);
      this.log.appendChild(node);
      this.scrollDown();
      return node;
    }

    addBot(text, extraClass, ts) {
      var node = el("div", { class: "msg bot" + (extraClass ? " " + extraClass : ""), dir: "auto" }, text);
      stamp(node, ts);
      this.log.appendChild(node);
      this.scrollDown();
      return node;
    }

    addSuggestions(suggestions, answered) {
      if (!suggestions || !suggestions.length) return;
      var group = el("div", { class: "suggestions", role: "group", "aria-label": "Suggested questions" });
      suggestions.forEach((item) => {
        var button = el("button", { class: "suggestion", type: "button", dir: "auto" }, item.question);
        button.addEventListener("click", () => {
          if (this.busy) return; // still answering: keep the suggestions on offer
          group.querySelectorAll("button").forEach((b) => (b.disabled = true));
          this.send(item.question, item.faq_id);
        });
        button.disabled = Boolean(answered);
        group.appendChild(button);
      });
      this.log.appendChild(group);
      this.scrollDown();
    }

    addFeedback(turnId, rating) {
      var row = el("div", { class: "feedback", role: "group", "aria-label": "Was this answer helpful?" });
      row.appendChild(el("span", { "aria-hidden": "true" }, "Helpful?"));
      var up = el("button", { type: "button", "aria-label": "Yes, helpful", "aria-pressed": "false" });
      var down = el("button", { type: "button", "aria-label": "No, not helpful", "aria-pressed": "false" });
      up.appendChild(icon(THUMB_PATH, ""));
      down.appendChild(icon(THUMB_PATH, "down"));
      var status = el("span", { class: "feedback-status" });
      var show = (vote) => {
        up.setAttribute("aria-pressed", String(vote === "up"));
        down.setAttribute("aria-pressed", String(vote === "down"));
      };
      show(rating);
      // one vote per answer: pressing the other thumb replaces it (the server keeps the latest)
      var rate = (vote) => {
        if (vote === rating) return;
        var before = rating;
        rating = vote;
        show(vote);
        this.post("/api/feedback", { session_id: this.sessionId, turn_id: turnId, rating: vote })
          .then(() => (status.textContent = "Thanks for your feedback!"))
          .catch(() => {
            status.textContent = "Feedback could not be sent. Please try again.";
            rating = before;
            show(before);
          });
      };
      up.addEventListener("click", () => rate("up"));
      down.addEventListener("click", () => rate("down"));
      row.append(up, down, status);
      this.log.appendChild(row);
      this.scrollDown();
    }

    setNotice(text) {
      this.notice.textContent = text;
      this.notice.hidden = !text;
    }

    addAgent(turn) {
      if (turn.turn_id && this.log.querySelector("[data-turn-id='" + turn.turn_id + "']")) return;
      var node = el("div", { class: "msg agent", dir: "auto" });
      if (turn.turn_id) node.dataset.turnId = turn.turn_id;
      // a dir of its own: the name neither sets the message's direction nor takes it
      node.appendChild(el("span", { class: "who", dir: "auto" }, turn.agent || "Our team"));
      node.appendChild(document.createTextNode(turn.text));
      stamp(node, turn.ts);
      this.log.appendChild(node);
      this.typingLine.hidden = true;
      this.scrollDown();
    }

    showAgentState(state) {
      this.agentState = state;
      if (!state) return;
      clearTimeout(this.waitTimer);
      if (state.status === "claimed") {
        this.setNotice("You are connected to " + state.agent + ".");
        this.leaveForm.hidden = true;
      } else if (state.status === "waiting") {
        if (state.timed_out && !state.left_message) {
          this.setNotice(
            "Sorry, nobody from our team is free right now. Leave a message and we will get back to you."
          );
          this.leaveForm.hidden = false;
        } else {
          this.setNotice(
            state.left_message
              ? "Your message is stored; our team will read it."
              : "We're finding a member of our team. Please stay on this page."
          );
          var left = state.waiting_since + state.wait_timeout_s - Date.now() / 1000;
          if (!state.left_message) {
            this.waitTimer = setTimeout(() => this.refreshState(), Math.max(left, 0) * 1000 + 500);
          }
        }
      } else {
        this.setNotice(
          (state.agent || "Our team") + " ended the conversation. Ask me anything, I'm the bot again."
        );
        this.leaveForm.hidden = true;
      }
      if (state.status === "waiting" || state.status === "claimed") this.connectLive();
      else this.disconnectLive();
    }

    refreshState() {
      var sessionId = this.sessionId;
      if (!sessionId) return Promise.resolve();
      return fetch(this.api + "/api/sessions/" + encodeURIComponent(sessionId))
        .then((response) => (response.ok ? response.json() : null))
        .then((history) => {
          if (!history || sessionId !== this.sessionId) return; // none, or of a forgotten session
          this.seen = { turns: history.turns.length, status: (history.agent_state || {}).status || "" };
          history.turns.forEach((turn) => {
            if (turn.role === "agent") this.addAgent(turn);
          });
          this.showAgentState(history.agent_state);
        })
        .catch(() => {});
    }

    onLiveEvent(event) {
      if (event.type === "message") this.addAgent(event.turn);
      else if (event.type === "typing") this.showTyping(event.agent);
      else if (event.type === "status") {
        var state = Object.assign({}, this.agentState || {}, { status: event.status, agent: event.agent });
        this.showAgentState(state);
      }
    }

    showTyping(agent) {
      this.typingLine.textContent = agent + " is typing…";
      this.typingLine.hidden = false;
      clearTimeout(this.typingTimer);
      this.typingTimer = setTimeout(() => (this.typingLine.hidden = true), 4000);
    }

    sayTyping() {
      var state = this.agentState;
      if (!state || state.status !== "claimed" || !this.sessionId) return;
      var now = Date.now();
      if (this.lastTyping && now - this.lastTyping < 2000) return;
      this.lastTyping = now;
      fetch(this.api + "/api/sessions/" + this.sessionId + "/typing", { method: "POST" }).catch(() => {});
    }

    connectLive() {
      if (this.live || !this.sessionId) return;
      var base = this.api + "/api/sessions/" + encodeURIComponent(this.sessionId);
      if (window.EventSource && !this.hasAttribute("long-polling")) {
        var source = new EventSource(base + "/events");
        ["message", "typing", "status"].forEach((type) =>
          source.addEventListener(type, (event) => this.onLiveEvent(JSON.parse(event.data)))
        );
        source.addEventListener("open", () => {
          this.liveRetryS = 0;
          this.refreshState();
        });
        // EventSource retries a dropped stream by itself, but gives up for good on an answer
        // other than 200 (a 503 while the server's live connections are all in use, a proxy's
        // 502 during a rolling update): then the widget keeps up by refreshing (liveLost)
        source.addEventListener("error", () => {
          if (source.readyState === EventSource.CLOSED) this.liveLost();
        });
        this.live = { close: () => source.close() };
        return;
      }
      var stopped = false;
      this.live = { close: () => (stopped = true) };
      var poll = () => {
        if (stopped) return;
        // what the last refresh saw: the server answers at once if the conversation moved on
        var seen = this.seen ? "&turns=" + this.seen.turns + "&status=" + encodeURIComponent(this.seen.status) : "";
        fetch(base + "/wait?timeout=10" + seen)
          .then((response) =>
            response.ok ? response.json() : response.json().then((data) => Promise.reject(data))
          )
          .then((data) => {
            if (stopped) return;
            this.liveRetryS = 0;
            if (data.event) this.onLiveEvent(data.event);
            // resync from the session (agent turns are added once, by turn id), then wait
            // again; an event published between the two is caught by the next poll's seen
            var before = this.seen;
            return this.refreshState().then(() => {
              if (data.changed && this.seen === before) setTimeout(poll, 3000); // refresh failed
              else poll();
            });
          })
          .catch((failed) => {
            if (!stopped) this.liveLost(failed && failed.retry_after); // a 503's JSON says when
          });
      };
      this.refreshState();
      poll();
    }

    /** The live connection failed (refused, the API out of reach): refresh the conversation
     * now and every few seconds (3, doubling up to 30 while it keeps failing), and go live
     * again at the first refresh after `retryAfterS` (the server's Retry-After, when known). */
    liveLost(retryAfterS) {
      this.disconnectLive();
      var stopped = false;
      var timer;
      var waitS = Math.min(Math.max(Number(retryAfterS) || 0, 0), LIVE_RETRY_MAX_S);
      var liveAt = Date.now() + waitS * 1000;
      var next = () => {
        this.liveRetryS = Math.min((this.liveRetryS || LIVE_RETRY_FIRST_S / 2) * 2, LIVE_RETRY_MAX_S);
        timer = setTimeout(() => {
          this.refreshState().then(() => {
            if (stopped) return; // the conversation ended, or the session was forgotten
            if (Date.now() < liveAt) return next();
            this.live = null;
            this.connectLive();
          });
        }, this.liveRetryS * 1000);
      };
      this.live = {
        close: () => {
          stopped = true;
          clearTimeout(timer);
        },
      };
      this.refreshState();
      next();
    }

    disconnectLive() {
      if (this.live) this.live.close();
      this.live = null;
    }

    /** Drop the session (expired, or unknown to the server) and all that belonged to it: its
     * conversation with a person, the live connection to it and the notice about it. The next
     * message starts a new session, for the bot. */
    forgetSession() {
      this.sessionId = null;
      this.disconnectLive();
      this.agentState = null;
      this.seen = null;
      clearTimeout(this.waitTimer);
      clearTimeout(this.typingTimer);
      this.typingLine.hidden = true;
      this.leaveForm.hidden = true;
      this.setNotice("");
    }

    /** fetch() of `path` on the API, rejected with `timedOut` when the answer (headers and body)
     * has not come within REQUEST_TIMEOUT_S: a hung API is reported, never waited on forever. */
    request(path, options, read) {
      var abort = window.AbortController ? new AbortController() : null;
      var timer;
      var late = new Promise((resolve, reject) => {
        timer = setTimeout(() => {
          reject(Object.assign(new Error("no answer within " + REQUEST_TIMEOUT_S + " s"), { timedOut: true }));
          if (abort) abort.abort();
        }, REQUEST_TIMEOUT_S * 1000);
      });
      var answer = fetch(this.api + path, Object.assign({}, options, abort ? { signal: abort.signal } : {}))
        .then(read);
      return Promise.race([answer, late]).finally(() => clearTimeout(timer));
    }

    post(path, body) {
      var options = {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      };
      return this.request(path, options, (response) =>
        response
          .json()
          .catch(() => ({}))
          .then((data) => {
            if (!response.ok) {
              var error = new Error(data.message || "HTTP " + response.status);
              error.status = response.status;
              error.code = data.error;
              var wait = parseFloat(response.headers.get("Retry-After") || data.retry_after);
              if (response.status === 503) error.retryAfter = isNaN(wait) ? 5 : wait;
              throw error;
            }
            return data;
          })
      );
    }

    setBusy(busy) {
      this.busy = busy;
      this.sendButton.disabled = busy;
      this.log.setAttribute("aria-busy", busy ? "true" : "false");
    }

    send(text, faqId) {
      if (this.busy) return;
      var bubble = this.addUser(text);
      this.input.value = "";
      var body = { message: text, page_url: location.href };
      if (faqId) body.faq_id = faqId;
      this.deliver(bubble, body, 0);
    }

    /** POST one message; on failure keep it as a "not sent" bubble with a Retry button. */
    deliver(bubble, body, autoRetries) {
      this.setBusy(true);
      this.showThinking(true);
      var attempt = (retry) => {
        var sessionId = this.sessionId;
        var payload = Object.assign({}, body, sessionId ? { session_id: sessionId } : {});
        // a worker that never saw the handoff still knows not to let the bot answer in an outage
        if (sessionId && this.withPerson()) payload.with_person = true;
        return this.post("/api/chat", payload).catch((error) => {
          if (retry && error.code === "unknown_session") {
            this.forgetSession(); // expired: start a new session
            return attempt(false);
          }
          throw error;
        });
      };
      attempt(true)
        .then((reply) => {
          bubble.classList.remove("pending");
          this.render(reply);
        })
        .catch((error) => this.showFailure(bubble, body, error, autoRetries))
        .finally(() => {
          this.showThinking(false);
          this.setBusy(false);
          if (this.restorePending) this.restore(); // the earlier conversation, now or again
          if (!this.panel.hidden && !this.panel.contains(this.shadowRoot.activeElement)) {
            this.input.focus();
          }
        });
    }

    /** Whether the conversation, as last seen, waits for or is held by a person. */
    withPerson() {
      var state = this.agentState;
      return !!state && (state.status === "waiting" || state.status === "claimed");
    }

    showThinking(on) {
      if (this.dots) this.dots.remove();
      this.dots = null;
      if (!on) return;
      // inside the aria-live log, so its text is announced; no role="status" of its own (the
      // handoff notice is the widget's one status)
      this.dots = el("div", { class: "dots" });
      this.dots.append(el("span", { class: "sr-only" }, "The assistant is typing…"), el("i"), el("i"), el("i"));
      this.log.appendChild(this.dots);
      this.scrollDown();
    }

    showFailure(bubble, body, error, autoRetries) {
      var unreachable = error.status === undefined && !error.timedOut; // offline or server down
      if (!unreachable && error.status < 500 && error.status !== 429) {
        this.addBot("Sorry, that message could not be answered: " + error.message, "error");
        return;
      }
      bubble.classList.add("pending");
      var box = el("div", { class: "failure", role: "alert" });
      var line = el("p");
      var retryButton = el("button", { class: "retry", type: "button" }, "Retry");
      box.append(line, retryButton);
      this.log.appendChild(box);
      this.scrollDown();
      var timer = null;
      var retry = (count) => {
        clearTimeout(timer);
        box.remove();
        this.deliver(bubble, body, count);
      };
      retryButton.addEventListener("click", () => retry(0));
      var automatic = error.retryAfter !== undefined && autoRetries < AUTO_RETRIES;
      if (error.code === "too_many_waiting") {
        line.textContent = error.message + " Your message is kept: press Retry to send it.";
      } else if (error.status === 429) {
        line.textContent = "You are sending messages very quickly. Please wait a moment, then press Retry.";
      } else if (automatic) {
        var wait = Math.min(Math.max(error.retryAfter, 1), MAX_RETRY_WAIT_S);
        line.textContent =
          "Our help service is busy. Your message is kept and will be sent again in " +
          Math.round(wait) + " s, or press Retry now.";
        timer = setTimeout(() => retry(autoRetries + 1), wait * 1000);
      } else if (error.timedOut) {
        line.textContent =
          "Our help service did not answer within " + REQUEST_TIMEOUT_S + " s. " +
          "Please press Retry in a moment to send your message again.";
      } else {
        line.textContent = unreachable
          ? "Your message was not sent: we cannot reach our help service. " +
            "Check your internet connection, then press Retry."
          : "Your message was not sent: our help service is having trouble. " +
            "Please press Retry in a moment.";
      }
      if (!this.panel.hidden) retryButton.focus();
    }

    render(reply) {
      this.sessionId = reply.session_id;
      if (reply.outcome === "agent") {
        if (!this.live) this.refreshState();
        return; // a person has the conversation: the bot stays silent
      }
      this.showBotTurn({
        turn_id: reply.turn_id,
        text: reply.reply,
        outcome: reply.outcome,
        faq_id: reply.faq_id,
        faq_question: reply.question,
        answered: reply.answer !== null && reply.answer !== undefined,
        suggestions: reply.suggestions,
      });
      if (reply.handoff) this.refreshState();
    }

    /** A bot turn as sent by /api/chat or restored from /api/sessions/<id>. */
    showBotTurn(turn, suggestionsUsed) {
      var node = this.addBot(turn.text, "", turn.ts);
      node.dataset.outcome = turn.outcome || "";
      if (turn.faq_id) node.dataset.faqId = turn.faq_id;
      if (turn.faq_question) {
        var source = el("p", { class: "source" }, "From our FAQ: “");
        source.append(el("bdi", {}, turn.faq_question), "”");
        source.dataset.faqId = turn.faq_id;
        this.log.appendChild(source);
      }
      if (turn.answered) this.addFeedback(turn.turn_id, turn.rating);
      this.addSuggestions(turn.suggestions, suggestionsUsed);
    }

    /** Load the stored session's conversation (after a reload). When the API cannot be reached
     * the log says so, with a button, and it tries again by itself (backing off) until it loads. */
    restore() {
      var sessionId = this.sessionId;
      clearTimeout(this.restoreTimer);
      if (!sessionId) return;
      this.restorePending = true;
      this.request("/api/sessions/" + encodeURIComponent(sessionId), {}, (response) => {
        if (response.status === 404) {
          this.forgetSession();
          return null;
        }
        if (!response.ok) throw Object.assign(new Error("HTTP " + response.status), { status: response.status });
        return response.json();
      })
        .then((history) => {
          if (!history || sessionId !== this.sessionId) {
            this.restoreFailed(null);
            return;
          }
          if (this.busy) return; // a message is on its way: load once it is answered (deliver)
          this.showHistory(history);
        })
        .catch((error) => this.restoreFailed(error));
    }

    /** Show `error` (null: nothing left to load) about the earlier conversation and retry later.
     * The focus, when on the box it replaces, goes to the new box's button (or, once there is
     * nothing left to load, to the question box), never to the page's <body>. */
    restoreFailed(error) {
      var hadFocus = !!this.restoreBox && this.restoreBox.contains(this.shadowRoot.activeElement);
      if (this.restoreBox) this.restoreBox.remove();
      this.restoreBox = null;
      if (!error) {
        this.restorePending = false;
        this.restoreTries = 0;
        if (hadFocus) this.input.focus();
        return;
      }
      var wait = RESTORE_RETRY_S[Math.min(this.restoreTries || 0, RESTORE_RETRY_S.length - 1)];
      this.restoreTries = (this.restoreTries || 0) + 1;
      var box = el("div", { class: "failure restore-failure" });
      var why = error.status
        ? "our help service is having trouble"
        : "we cannot reach our help service";
      var button = el("button", { class: "retry", type: "button" }, "Load them again");
      button.addEventListener("click", () => this.restore());
      box.append(
        el("p", {}, "Your earlier messages could not be loaded: " + why + ". Trying again in " + wait + "\u00a0s."),
        button
      );
      this.greet();
      this.log.insertBefore(box, this.log.querySelector(".greeting").nextSibling);
      this.restoreBox = box;
      if (hadFocus) button.focus();
      this.restoreTimer = setTimeout(() => this.restore(), wait * 1000);
    }

    /** Rebuild the log from the session's turns; a message not sent yet stays at the end. */
    showHistory(history) {
      this.restoreFailed(null);
      var keep = Array.from(this.log.querySelectorAll(".msg.pending, .failure, .dots"));
      this.log.replaceChildren();
      this.greet();
      var turns = history.turns || [];
      var last = turns.length - 1;
      turns.forEach((turn, index) => {
        if (turn.role === "user") this.addUser(turn.text, turn.ts);
        else if (turn.role === "agent") this.addAgent(turn);
        else this.showBotTurn(Object.assign({ answered: turn.outcome === "answer" }, turn), index < last);
      });
      this.log.append(...keep);
      this.scrollDown();
      var state = history.agent_state;
      if (state && (state.status === "waiting" || state.status === "claimed")) {
        this.showAgentState(state);
      }
    }
  }

  if (!customElements.get("threefold-chat")) {
    customElements.define("threefold-chat", ThreefoldChat);
  }
  function mount() {
    if (!document.querySelector("threefold-chat")) {
      document.body.appendChild(document.createElement("threefold-chat"));
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
