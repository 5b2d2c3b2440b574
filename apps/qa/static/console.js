/*
 * Shared by the staff pages (agent console, review queue): the element builder and the JSON API
 * client that sends the bearer token. Texts from the server are set with textContent, never as
 * HTML. A network failure becomes an error with status 0 and a message a person can act on.
 * `resumeKept` signs a reloaded page back in with the token the tab kept, also after an outage;
 * `api.signInCheck` makes sure an answer for a token no longer in use changes nothing.
 */
(function () {
  "use strict";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach((name) => node.setAttribute(name, attrs[name]));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /* api(method, path, body) for the token `token()` returns; resolves to the JSON body (null
     for 204) or rejects with an Error carrying the server's message and the HTTP status. */
  function client(token) {
    function api(method, path, body) {
      var headers = { Authorization: "Bearer " + token() };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return fetch(path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      })
        .catch(() => {
          var down = new Error(
            "The FAQ service did not answer. Check that it is running, then try again: nothing was changed."
          );
          down.status = 0;
          throw down;
        })
        .then((response) => {
          if (response.status === 204) return null;
          return response
            .json()
            .catch(() => ({}))
            .then((data) => {
              if (!response.ok) {
                var error = new Error(data.message || "HTTP " + response.status);
                error.status = response.status;
                throw error;
              }
              return data;
            });
        });
    }

    /* A sign-in's check: GET `path` with `candidate`, which the page has just made its token.
       Its answer, success or refusal, counts only while `candidate` is still the page's token:
       once another sign-in took over (the form while a resumed sign-in was on its way, or the
       other way round) it rejects with an Error whose `stale` is true, and the page changes
       nothing. */
    api.signInCheck = function (candidate, path) {
      var current = () => {
        if (token() === candidate) return;
        var stale = new Error("Another sign-in took over.");
        stale.stale = true;
        throw stale;
      };
      return api("GET", path).then(
        (data) => {
          current();
          return data;
        },
        (error) => {
          current();
          throw error;
        }
      );
    };
    return api;
  }

  var FIRST_RESUME_WAIT_S = 2;
  var MAX_RESUME_WAIT_S = 60;

  /* After a reload, sign in again with the token this tab kept: `signIn()` tries it. A token the
     server refuses is forgotten (`forget()`) and the form asks for one; while the service cannot
     be reached or fails, `say(text)` tells why and it tries again by itself (2 s, doubling to
     60 s) until it answers. Returns a function that stops trying (signed in with the form);
     an answer still on its way then changes nothing (`signIn` rejects it as `stale`). */
  function resume(signIn, say, forget) {
    var waitS = FIRST_RESUME_WAIT_S;
    var timer = null;
    var stopped = false;
    var attempt = () =>
      signIn().then(
        () => say(""),
        (error) => {
          if (stopped || error.stale) return;
          if (error.status === 401 || error.status === 403) {
            forget();
            say("Your saved sign-in was not accepted. Enter your token to sign in again.");
            return;
          }
          var why = error.status === 0 ? "the FAQ service did not answer." : error.message;
          say("Could not sign you back in: " + why + " Trying again in " + waitS + "\u00a0s.");
          timer = setTimeout(attempt, waitS * 1000);
          waitS = Math.min(waitS * 2, MAX_RESUME_WAIT_S);
        }
      );
    attempt();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /* A staff page's start: `resume` with the token this tab kept under `tokenKey` (the page's
     `#sign-in-error` says how it goes; a refused token is forgotten with `forgetToken()`), or,
     with none kept, the focus in `#token`. Returns the function that stops resuming. */
  function resumeKept(tokenKey, signIn, forgetToken) {
    var kept = null;
    try {
      kept = sessionStorage.getItem(tokenKey);
    } catch (error) {
      kept = null; // storage disabled
    }
    var field = document.getElementById("token");
    if (!kept) {
      field.focus();
      return () => {};
    }
    return resume(
      () => signIn(kept),
      (text) => (document.getElementById("sign-in-error").textContent = text),
      () => {
        forgetToken();
        field.focus();
      }
    );
  }

  window.threefoldConsole = { el: el, client: client, resumeKept: resumeKept };
})();
