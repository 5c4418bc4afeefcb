// Canal's only hand-written script. It shows the WebSocket's state, since
// htmx-ext-ws reconnects by itself (full-jitter backoff after 1006, 1012 or
// 1013) but says nothing to the person watching; and it re-reads the pages'
// live regions (tables, a message, a job's runs) when the hub says so.
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
  document.addEventListener("htmx:wsOpen", function () {
    // Back after a loss: what the live regions show may be stale.
    if (lostSince) { refreshAll(); }
    lostSince = null;
    show("open");
  });
  document.addEventListener("htmx:wsClose", function () {
    if (!lostSince) { lostSince = new Date(); }
    show("closed");
  });

  // Live regions. The hub cannot know which rows a page shows, so each frame
  // appends to #changes what changed (<i data-live="outbox" data-id="…">),
  // and every element with a matching data-live (narrowed by data-live-id)
  // is read again from the server, rendered by the same templ component.
  // At most once a second per region, never while the pointer is on it
  // (a row must not move under a click; a pointer left resting there holds it
// back for a few seconds only), and the button's answer stays.
  var refreshEvery = 1000, holdAtMost = 5000;
  var regions = {}; // region id -> {busy, again, last}

  function matches(region, mark) {
    if (region.dataset.live !== mark.dataset.live) { return false; }
    var want = region.dataset.liveId, got = mark.dataset.id;
    return !want || !got || want === got;
  }

  function refresh(id) {
    var r = regions[id] || (regions[id] = { busy: false, again: false, last: 0 });
    if (r.busy) { r.again = true; return; }
    r.busy = true;
    var asked = Date.now();
    setTimeout(function run() {
      var el = document.getElementById(id);
      if (!el) { r.busy = false; return; }
      if (el.matches(":hover") && Date.now() - asked < holdAtMost) { setTimeout(run, refreshEvery); return; }
      r.last = Date.now();
      var done = function () {
        r.busy = false;
        if (r.again) { r.again = false; refresh(id); }
      };
      htmx.ajax("GET", location.pathname + location.search, { target: el, select: "#" + id, swap: "outerHTML" })
        .then(done, done);
    }, Math.max(0, r.last + refreshEvery - Date.now()));
  }

  function refreshAll() {
    document.querySelectorAll("[data-live][id]").forEach(function (el) { refresh(el.id); });
  }

  document.addEventListener("htmx:wsAfterMessage", function () {
    var box = document.getElementById("changes");
    if (!box || !box.firstElementChild) { return; }
    var marks = Array.prototype.slice.call(box.querySelectorAll("[data-live]"));
    box.replaceChildren();
    document.querySelectorAll("[data-live][id]").forEach(function (el) {
      if (marks.some(function (m) { return matches(el, m); })) { refresh(el.id); }
    });
  });
})();
