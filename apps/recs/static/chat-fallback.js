// The store's stand-in for the FAQ chat widget while the FAQ server cannot be reached: the
// widget's script (from that server) failed to load, so the shopper would see no chat at all.
// Deferred right after the widget's script tag, so it runs once that script ran or failed. It
// shows a launcher in the widget's place; opening it says that chat is unavailable right now,
// with "Try again" (loads the widget's script again: once it loads, the widget takes over).
// Button, dialog, Escape to close, focus back on the launcher; every text set with textContent.
"use strict";

(function () {
  const WIDGET = "threefold-chat"; // the custom element the widget's script defines
  const self = document.currentScript;
  const widgetSrc = self.dataset.widget;
  const title = self.dataset.title || "Help";
  if (!widgetSrc || customElements.get(WIDGET)) return; // no chat configured, or it loaded

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  /** A speech bubble, as the widget's launcher shows. */
  function chatIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z");
    svg.append(path);
    return svg;
  }

  const root = el("div", { class: "chat-fallback" });
  const launcher = el("button", {
    type: "button",
    class: "chat-fallback-launcher",
    "aria-label": "Open chat: " + title,
    "aria-expanded": "false",
    "aria-controls": "chat-fallback-panel",
    "aria-haspopup": "dialog",
  });
  launcher.append(chatIcon());
  const panel = el("div", {
    id: "chat-fallback-panel",
    class: "chat-fallback-panel",
    role: "dialog",
    "aria-modal": "false",
    "aria-labelledby": "chat-fallback-title",
    "aria-describedby": "chat-fallback-text",
  });
  panel.hidden = true;
  const heading = el("h2", { id: "chat-fallback-title" }, title);
  const close = el("button", { type: "button", class: "chat-fallback-close", "aria-label": "Close chat" }, "×");
  const text = el(
    "p",
    { id: "chat-fallback-text", role: "status" },
    "Chat is unavailable right now. Please try again in a few minutes; your recommendations " +
      "keep working meanwhile."
  );
  const retry = el("button", { type: "button", class: "chat-fallback-retry" }, "Try again");
  const header = el("div", { class: "chat-fallback-header" });
  header.append(heading, close);
  panel.append(header, text, retry);
  root.append(panel, launcher);
  document.body.append(root);

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat: " + title);
    retry.focus();
  }

  function hide() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat: " + title);
    launcher.focus();
  }

  let connecting = false;
  function tryAgain() {
    if (connecting) return;
    connecting = true;
    text.textContent = "Connecting to chat…";
    const script = el("script", { src: widgetSrc, "data-title": title });
    script.addEventListener("load", () => {
      if (!customElements.get(WIDGET)) return failed();
      root.remove(); // the widget mounted its own launcher in this place
      const widget = document.querySelector(WIDGET);
      const widgetLauncher = widget && widget.shadowRoot && widget.shadowRoot.querySelector("button");
      if (widgetLauncher) widgetLauncher.focus();
    });
    script.addEventListener("error", failed);
    document.body.append(script);

    function failed() {
      script.remove();
      connecting = false;
      text.textContent = "Chat is still unavailable. Please try again in a few minutes.";
    }
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : hide()));
  close.addEventListener("click", hide);
  retry.addEventListener("click", tryAgain);
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) hide();
  });
})();
