// Canal's only hand-written script: it shows the WebSocket's state, since
// htmx-ext-ws reconnects by itself (full-jitter backoff after 1006, 1012 or
// 1013) but says nothing to the person watching.
(function () {
  "use strict";
  var lostSince = null;
  function fmt(d) { return d.toTimeString().slice(0, 8); } // 15:04:05, as the server writes times
  function show(state) {
    document.querySelectorAll("[data-conn]").forEach(function (el) {
      el.dataset.state = state;
      el.textContent = state === "open" ? "live" :
        state === "closed" ? "connection lost since " + fmt(lostSince) : "connecting…";
    });
    document.querySelectorAll("[data-conn-banner]").forEach(function (el) {
      el.hidden = state !== "closed";
      if (state === "closed") {
        el.textContent = "Connection lost since " + fmt(lostSince) + " — reconnecting…";
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { show("connecting"); });
  document.addEventListener("htmx:wsOpen", function () { lostSince = null; show("open"); });
  document.addEventListener("htmx:wsClose", function () {
    if (!lostSince) { lostSince = new Date(); }
    show("closed");
  });
})();
