// The dispatch board's extras over its plain forms: the map, dragging a leg onto a volunteer, and a
// refresh of the queue and the columns every few seconds. Without this file every action still
// works: each leg has its own form (choose a volunteer, press the button).
(function () {
  "use strict";

  var board = document.getElementById("board");
  var live = document.getElementById("board-live");
  if (!board || !live) return;

  // --- the map -------------------------------------------------------------------------------------
  var mapBox = document.getElementById("board-map");
  var map = null;
  var layer = null;
  var fitted = false;

  function number(value) {
    var n = parseFloat(value);
    return isFinite(n) ? n : null;
  }

  function startMap() {
    if (!mapBox || typeof L === "undefined") return;
    map = L.map(mapBox, { zoomControl: true, attributionControl: true, keyboard: false });
    var tiles = mapBox.getAttribute("data-tile-url");
    if (tiles) {
      L.tileLayer(tiles, { attribution: mapBox.getAttribute("data-attribution") || "", maxZoom: 19 }).addTo(map);
    }
    map.setView([29.87, 121.55], 11); // Ningbo, until the points say where to look
    layer = L.layerGroup().addTo(map);
  }

  function drawPoints() {
    if (!map) return;
    layer.clearLayers();
    var bounds = [];
    function add(element, volunteer) {
      var lat = number(element.getAttribute("data-lat"));
      var lon = number(element.getAttribute("data-lon"));
      if (lat === null || lon === null) return;
      var name = element.getAttribute("data-name") || "";
      // Circles for volunteers, squares for legs: told apart by shape, not only by colour.
      var marker = volunteer
        ? L.circleMarker([lat, lon], { radius: 8, color: "#0b5cad", weight: 2, fillOpacity: 0.8 })
        : L.marker([lat, lon], {
            icon: L.divIcon({ className: "map-leg", iconSize: [14, 14] }),
            keyboard: false, // the queue and the columns say the same in words, in reading order
          });
      var kind = mapBox.getAttribute(volunteer ? "data-volunteer-text" : "data-leg-text");
      marker.bindTooltip(kind + " " + name, { permanent: false });
      marker.addTo(layer);
      bounds.push([lat, lon]);
    }
    live.querySelectorAll(".queue .leg-card[data-lat]").forEach(function (el) { add(el, false); });
    live.querySelectorAll(".volunteer-col[data-lat]").forEach(function (el) { add(el, true); });
    mapBox.setAttribute("data-points", String(bounds.length));
    if (bounds.length && !fitted) {
      map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15 });
      fitted = true;
    }
  }

  // --- dragging a leg onto a volunteer ----------------------------------------------------------------
  // The drop fills the card's own form (the same the keyboard uses) and sends it.
  var dragging = null;

  live.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest(".leg-card[draggable]");
    if (!card) return;
    dragging = card;
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.getAttribute("data-leg-id"));
  });

  live.addEventListener("dragend", function () {
    if (dragging) dragging.classList.remove("dragging");
    dragging = null;
    live.querySelectorAll(".drop-target").forEach(function (el) { el.classList.remove("drop-target"); });
  });

  function column(event) {
    return event.target.closest ? event.target.closest(".volunteer-col") : null;
  }

  live.addEventListener("dragover", function (event) {
    var col = column(event);
    if (!col || !dragging) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    col.classList.add("drop-target");
  });

  live.addEventListener("dragleave", function (event) {
    var col = column(event);
    if (col && !col.contains(event.relatedTarget)) col.classList.remove("drop-target");
  });

  live.addEventListener("drop", function (event) {
    var col = column(event);
    if (!col) return;
    event.preventDefault();
    var legId = event.dataTransfer.getData("text/plain") || (dragging && dragging.getAttribute("data-leg-id"));
    var card = legId && live.querySelector('.queue .leg-card[data-leg-id="' + legId + '"]');
    var form = card && card.querySelector("form.assign-form");
    if (!form) return;
    form.elements["volunteer_id"].value = col.getAttribute("data-volunteer-id");
    col.classList.remove("drop-target");
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  });

  // --- refreshing -----------------------------------------------------------------------------------
  // Never while a person is choosing in one of the board's forms or dragging a card.
  var refreshS = Math.max(2, parseInt(board.getAttribute("data-refresh-s"), 10) || 5);
  var busy = false;

  function inUse() {
    var active = document.activeElement;
    return dragging !== null || (active && live.contains(active) && active.closest("form"));
  }

  function refresh() {
    if (busy || document.hidden || inUse()) return;
    busy = true;
    fetch(board.getAttribute("data-live-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected || !response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        if (inUse()) return;
        live.innerHTML = html;
        drawPoints();
        board.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next round tries again */ })
      .then(function () { busy = false; });
  }

  startMap();
  drawPoints();
  board.setAttribute("data-ready", "true");
  window.setInterval(refresh, refreshS * 1000);
})();
