"""A resumed sign-in held on its way: races between a slow answer for the token a tab kept and a
sign-in with the form meanwhile, on the staff pages (alerts review, agent console, review queue).

`hold_kept_token(context, key, path)` makes every later page load of `context` hold back its
requests to `path` sent with the token that sessionStorage[`key`] held when the page loaded (the
resumed sign-in) until `release_held(page)`; the server answers them for real once they go.
`wait_answers_read(page, path, token)` waits until the page has read the answer to a request to
`path` sent with `token`: the count rises in the microtask checkpoint in which the page's own code
handles that answer, so once the wait returns, that code has run (no sleeping and hoping).
"""

from __future__ import annotations

import json

_HOLD = """([key, path]) => {
  const kept = sessionStorage.getItem(key);
  const realFetch = window.fetch;
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  window.__held = { count: 0, read: {}, release: () => open() };
  window.fetch = (url, options) => {
    const auth = ((options && options.headers) || {}).Authorization || "";
    const token = auth.replace(/^Bearer /, "");
    const here = new URL(url, location.href).pathname === path;
    const held = here && kept !== null && token === kept;
    if (held) window.__held.count += 1;
    const sent = (held ? gate : Promise.resolve()).then(() => realFetch(url, options));
    return sent.then((response) => {
      if (!here) return response;
      const json = response.json.bind(response);
      const count = () => (window.__held.read[token] = (window.__held.read[token] || 0) + 1);
      response.json = () => json().finally(count);
      return response;
    });
  };
}"""


def hold_kept_token(context, storage_key: str, path: str) -> None:
    """From the next page load on, hold back the requests to `path` with the token the tab kept."""
    context.add_init_script(f"({_HOLD})({json.dumps([storage_key, path])})")


def wait_held(page) -> None:
    """Wait until the page has sent its request with the kept token (held back)."""
    page.wait_for_function("window.__held && window.__held.count >= 1")


def release_held(page) -> None:
    """Let the held requests go to the server."""
    page.evaluate("window.__held.release()")


def wait_answers_read(page, token: str, count: int = 1) -> None:
    """Wait until the page has read and handled `count` answers sent with `token` (to `path`)."""
    page.wait_for_function(f"(window.__held.read[{json.dumps(token)}] || 0) >= {count}")
