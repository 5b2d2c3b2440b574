/*
 * The review queue: sign in with the admin token (kept in this tab's sessionStorage, sent as a
 * bearer header), read GET /api/review, and turn each group into paraphrases of an FAQ, a new FAQ,
 * or dismiss it. Every text from the server is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "threefold-admin-token";
  var KIND_LABELS = {
    unanswered: "Declined",
    thumbs_down: "Thumbs down",
    agent_reply: "Agent reply",
  };
  var $ = (id) => document.getElementById(id);
  var state = { token: null, faqs: [] };

  var el = window.threefoldConsole.el;
  var api = window.threefoldConsole.client(() => state.token);

  function signIn(token) {
    state.token = token;
    return api.signInCheck(token, "/api/review").then((data) => {
      render(data);
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (error) {
        /* storage disabled: sign in again after a reload */
      }
      $("sign-in").hidden = true;
      $("review").hidden = false;
      $("sign-out").hidden = false;
      $("summary").focus();
    });
  }

  function load() {
    return api("GET", "/api/review").then(render);
  }

  function render(data) {
    state.faqs = data.faqs;
    var groups = data.groups;
    $("summary").textContent = groups.length
      ? data.count + " item" + (data.count === 1 ? "" : "s") + " to review in " + groups.length +
        " group" + (groups.length === 1 ? "" : "s") + " · bot version " + data.bot_version
      : "Nothing to review · bot version " + data.bot_version;
    var list = $("groups");
    list.textContent = "";
    groups.forEach((group, n) => list.appendChild(groupCard(group, n)));
    if (!groups.length) list.appendChild(el("p", { class: "empty-queue" }, "The queue is empty."));
  }

  function groupCard(group, n) {
    var id = "g" + n;
    var card = el("article", { class: "card group", "aria-labelledby": id + "-title" });
    var title = el("h2", { id: id + "-title", tabindex: "-1" });
    title.appendChild(el("span", { class: "kind " + group.kind }, KIND_LABELS[group.kind]));
    if (group.size > 1) title.append(group.size + "× ");
    // the customer's question in a <bdi>: its own direction inside the page's LTR heading
    title.appendChild(el("bdi", {}, group.questions[0]));
    card.appendChild(title);
    if (group.questions.length > 1) {
      var questions = el("ul", { class: "questions", "aria-label": "Questions in this group" });
      group.questions.forEach((q) => questions.appendChild(el("li", { dir: "auto" }, q)));
      card.appendChild(questions);
    }
    var first = group.items[0];
    var meta = [];
    if (first.reason) meta.push("reason: " + first.reason.replace(/_/g, " "));
    if (first.bot_version) meta.push("bot version " + first.bot_version);
    if (first.agent) meta.push("answered by " + first.agent);
    if (meta.length) card.appendChild(el("p", { class: "meta" }, meta.join(" · ")));
    if (group.kind === "thumbs_down") {
      var given = el("p", { class: "context" }, "Answer given (" + first.faq_id + "): ");
      given.appendChild(el("bdi", {}, first.answer));
      card.appendChild(given);
      if (first.comment) {
        var comment = el("p", { class: "meta" }, "Comment: ");
        comment.appendChild(el("bdi", {}, first.comment));
        card.appendChild(comment);
      }
    }
    if (group.kind === "agent_reply") {
      var reply = el("p", { class: "context" }, "Agent's reply: ");
      reply.appendChild(el("bdi", {}, first.reply));
      card.appendChild(reply);
    }
    card.appendChild(paraphraseForm(group, id));
    card.appendChild(newFaqForm(group, id));
    var dismiss = el("button", { type: "button", class: "quiet dismiss" }, "Dismiss");
    dismiss.setAttribute("aria-describedby", id + "-title");
    dismiss.addEventListener("click", () =>
      act(card, "/api/review/dismiss", { items: group.item_ids }, "Dismissed.")
    );
    card.appendChild(dismiss);
    card.appendChild(el("p", { id: id + "-error", class: "error", role: "alert" }));
    return card;
  }

  function paraphraseForm(group, id) {
    var form = el("form", {});
    var box = el("fieldset", {});
    box.appendChild(el("legend", {}, "Add as paraphrase"));
    box.appendChild(el("label", { for: id + "-faq" }, "FAQ"));
    var select = el("select", { id: id + "-faq" });
    var suggested = group.suggested_faq && group.suggested_faq.faq_id;
    state.faqs.forEach((faq) => {
      var option = el("option", { value: faq.id }, faq.id + " — " + faq.question);
      if (faq.id === suggested) option.selected = true;
      select.appendChild(option);
    });
    box.appendChild(select);
    box.appendChild(el("button", { type: "submit" }, "Add as paraphrase"));
    form.appendChild(box);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(form.parentNode, "/api/review/paraphrase", {
        items: group.item_ids,
        faq_id: select.value,
      }, "Added to " + select.value + ".");
    });
    return form;
  }

  function newFaqForm(group, id) {
    var form = el("form", {});
    var details = el("details", {});
    details.appendChild(el("summary", {}, "New FAQ from these questions"));
    var box = el("fieldset", {});
    box.appendChild(el("legend", {}, "New FAQ"));
    var fields = [
      ["id", "FAQ id", "input", ""],
      ["answer", "Answer", "textarea", group.kind === "agent_reply" ? group.items[0].reply : ""],
      ["category", "Category (optional)", "input", ""],
    ];
    var inputs = {};
    fields.forEach(([name, label, tag, value]) => {
      box.appendChild(el("label", { for: id + "-" + name }, label));
      var input = el(tag, { id: id + "-" + name, dir: "auto" });
      if (tag === "textarea") input.rows = 2;
      input.value = value;
      inputs[name] = input;
      box.appendChild(input);
    });
    box.appendChild(el("button", { type: "submit", class: "quiet" }, "Create FAQ"));
    details.appendChild(box);
    if (group.kind === "agent_reply") details.open = true;
    form.appendChild(details);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(form.parentNode, "/api/review/new-faq", {
        items: group.item_ids,
        id: inputs.id.value.trim(),
        answer: inputs.answer.value.trim(),
        category: inputs.category.value.trim(),
      }, "Created FAQ " + inputs.id.value.trim() + ".");
    });
    return form;
  }

  function act(card, path, body, done) {
    var error = card.querySelector(".error");
    error.textContent = "";
    card.querySelectorAll("button").forEach((b) => (b.disabled = true));
    api("POST", path, body)
      .then((result) => {
        var version = result.version ? " Now answering from bot version " + result.version + "." : "";
        $("announce").classList.remove("failed");
        $("announce").textContent = done + version;
        var next = card.nextElementSibling;
        card.remove();
        var heading = next && next.querySelector("h2");
        (heading || $("summary")).focus();
        if (!document.querySelector(".group")) load();
      })
      .catch((failure) => {
        card.querySelectorAll("button").forEach((b) => (b.disabled = false));
        error.textContent = failure.message;
      });
  }

  function start() {
    var stopResuming = () => {};
    $("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      stopResuming();
      $("sign-in-error").textContent = "";
      signIn($("token").value.trim()).catch((failure) => {
        if (failure.stale) return; // a later sign-in took over and says how it went
        $("sign-in-error").textContent =
          failure.status === 401 || failure.status === 403
            ? "That token was not accepted."
            : failure.message;
      });
    });
    $("sign-out").addEventListener("click", () => {
      forgetToken();
      location.reload();
    });
    $("refresh").addEventListener("click", () => {
      $("announce").textContent = "";
      $("announce").classList.remove("failed");
      load().catch((failure) => {
        $("announce").classList.add("failed"); // an error, not a green "done"
        $("announce").textContent = failure.message;
      });
    });
    stopResuming = window.threefoldConsole.resumeKept(TOKEN_KEY, signIn, forgetToken);
  }

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (error) {
      /* nothing stored */
    }
  }

  start();
})();
