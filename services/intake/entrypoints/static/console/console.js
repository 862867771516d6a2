// The operator console's one script. Pages work without it; it adds: the one-time token from a
// password-setup link's fragment, the tab title's escalation count after each poll, focus on the
// first field with an error after a form comes back, and no page shown again from the back-forward
// cache.
"use strict";

(function () {
  function fillFromFragment() {
    const hash = new URLSearchParams(window.location.hash.slice(1));
    document.querySelectorAll("[data-from-fragment]").forEach(function (input) {
      const value = hash.get(input.getAttribute("data-from-fragment"));
      if (value && !input.value) {
        input.value = value;
      }
    });
    if (hash.size) {
      // The token must not stay in the address bar or the history.
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  function retitle() {
    const escalations = document.getElementById("escalations");
    const base = document.body.getAttribute("data-title") || document.title;
    const total = escalations ? Number(escalations.getAttribute("data-total") || "0") : 0;
    document.title = total > 0 ? "(" + total + ") " + base : base;
  }

  function focusFirstError() {
    const invalid = document.querySelector("[aria-invalid='true']");
    if (invalid) {
      invalid.focus();
    }
  }

  // A page the browser restores from its back-forward cache is asked for again, so after logging
  // out the back button shows the login page, never what the person saw before.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      window.location.reload();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    fillFromFragment();
    retitle();
    focusFirstError();
    document.body.addEventListener("htmx:afterSettle", retitle);
  });
})();
