// Runs while the app's modules are still downloading: the catalogue of the language the app will use
// is requested now rather than after them, which saves a round trip on a slow link.
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
  window.errandsCatalogue = {
    language: chosen,
    texts: fetch("/app/i18n/" + chosen + ".json").then(function (response) {
      if (!response.ok) throw new Error("catalogue " + chosen + ": " + response.status);
      return response.json();
    }),
  };
})();
