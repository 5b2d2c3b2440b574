/*
 * Shared by the staff pages (agent console, review queue): the element builder and the JSON API
 * client that sends the bearer token. Texts from the server are set with textContent, never as
 * HTML. A network failure becomes an error with status 0 and a message a person can act on.
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
    return function api(method, path, body) {
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
    };
  }

  window.threefoldConsole = { el: el, client: client };
})();
