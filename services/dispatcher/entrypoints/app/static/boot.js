// Runs while the app's modules are still downloading: the catalogue of the language the app will use
// is requested now rather than after them, which saves a round trip on a slow link; and a phone not
// enrolled yet sees the welcome screen at once.
(function () {
  var languages = ["zh", "en", "ko", "ja"];
  var kept = null;
  try {
    kept = localStorage.getItem("lang");
  } catch (e) {
    kept = null;
  }
  var chosen = languages.indexOf(kept) >= 0 ? kept : null;
  var asked = navigator.languages || [navigator.language || ""];
  for (var i = 0; !chosen && i < asked.length; i++) {
    var primary = String(asked[i]).toLowerCase().split("-")[0];
    if (languages.indexOf(primary) >= 0) chosen = primary;
  }
  chosen = chosen || "zh";
  // Not enrolled yet: the welcome screen (its texts already in the page) shows now, not after the
  // modules have loaded.
  var enrolled = false;
  try {
    enrolled = Boolean(localStorage.getItem("errands.token"));
  } catch (e) {
    enrolled = false;
  }
  var welcome = document.getElementById("screen-welcome");
  if (!enrolled && welcome && !/[#&]token=/.test(location.hash)) welcome.hidden = false;
  window.errandsCatalogue = {
    language: chosen,
    texts: fetch("/app/i18n/" + chosen + ".json").then(function (response) {
      if (!response.ok) throw new Error("catalogue " + chosen + ": " + response.status);
      return response.json();
    }),
  };
})();
