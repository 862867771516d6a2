// The operator console's one script. Pages work without it; it adds: the one-time token from a
// password-setup link's fragment, the tab title's escalation count after each poll, focus on the
// first field with an error after a form comes back, only the fields of the choice made, no page
// shown again from the back-forward cache, and a short sound when escalations rise, only for a person
// who switched it on (a click, remembered in this browser; nothing ever plays by itself).
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

  const SOUND_KEY = "errands.console.escalation-sound";
  let lastTotal = null;

  function soundOn() {
    try {
      return window.localStorage.getItem(SOUND_KEY) === "on";
    } catch (error) {
      return false;
    }
  }

  function cue() {
    const audio = document.getElementById("escalation-cue");
    if (audio && soundOn()) {
      const playing = audio.play();
      if (playing && playing.catch) {
        playing.catch(function () {}); // the browser may still refuse; the title says it anyway
      }
    }
  }

  function showSound(button) {
    const on = soundOn();
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = button.getAttribute(on ? "data-on" : "data-off");
  }

  function offerSound() {
    const button = document.getElementById("escalation-sound");
    if (!button) {
      return;
    }
    showSound(button);
    button.parentElement.hidden = false;
    button.addEventListener("click", function () {
      try {
        window.localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on");
      } catch (error) {
        return;
      }
      showSound(button);
      cue(); // heard once on switching on, so the person knows what it sounds like
    });
  }

  function retitle() {
    const escalations = document.getElementById("escalations");
    const base = document.body.getAttribute("data-title") || document.title;
    const total = escalations ? Number(escalations.getAttribute("data-total") || "0") : 0;
    document.title = total > 0 ? "(" + total + ") " + base : base;
    if (lastTotal !== null && total > lastTotal) {
      cue();
    }
    lastTotal = total;
  }

  // Fields that apply to one choice only (`data-when="radio_name:value|value"`) are shown while that
  // choice is made; without scripts every field shows, and the server reads the ones that apply.
  function showChosenFields(form) {
    form.querySelectorAll("[data-when]").forEach(function (field) {
      const rule = field.getAttribute("data-when").split(":");
      const checked = form.querySelector("input[type=radio][name='" + rule[0] + "']:checked");
      const shown = !checked || rule[1].split("|").indexOf(checked.value) >= 0;
      field.hidden = !shown;
    });
  }

  function followChoices() {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("[data-when]") || form.hasAttribute("data-following")) {
        return;
      }
      form.setAttribute("data-following", "");
      showChosenFields(form);
      form.addEventListener("change", function (event) {
        if (event.target.type === "radio") {
          showChosenFields(form);
        }
      });
    });
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
    followChoices();
    offerSound();
    retitle();
    focusFirstError();
    document.body.addEventListener("htmx:afterSettle", retitle);
    // A form htmx brought back (the new-task form after a search) follows its choices too.
    document.body.addEventListener("htmx:afterSettle", followChoices);
  });
})();
