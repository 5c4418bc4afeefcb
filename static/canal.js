// Canal's only hand-written script. It shows every time in one zone (the
// viewer's, or the server's -display-tz named on <html data-tz>); it shows the
// WebSocket's state, since htmx-ext-ws reconnects by itself (full-jitter
// backoff after 1006, 1012 or 1013) but says nothing to the person watching;
// while the socket is down it dims what may be stale, says as of when, and
// says so when a press could not be sent; and it re-reads the pages' live
// regions (tables, a message, a job's runs) when the hub says so.
(function () {
  "use strict";
  document.documentElement.classList.add("js"); // shows the .js-only controls
  // The path the dashboard is mounted under in another service ("" at the
  // root, "/canal"): every URL the server writes already carries it.
  var prefix = document.documentElement.dataset.prefix || "";

  // Every htmx request carries the page's CSRF token (double submit: the
  // server compares it with its cookie).
  document.addEventListener("htmx:configRequest", function (e) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { e.detail.headers["X-CSRF-Token"] = meta.content; }
  });
  // A refused button (403: a viewer, an expired form) answers a result
  // line: show it where the button's answer goes, not nothing.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var path = e.detail.requestConfig && e.detail.requestConfig.path;
    var st = e.detail.xhr.status;
    if (st >= 400 && st < 500 && path && path.indexOf(prefix + "/ui/") === 0) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  var lostSince = null, connected = false, stale = false;
  var lastFrame = new Date(); // what the page shows is as of this

  // Times. The server writes <time datetime="…UTC…" data-fmt="clock|stamp">;
  // here they are written again in the display zone.
  function zone() { return document.documentElement.dataset.tz || undefined; }
  var formatters = {};
  function parts(d) {
    var z = zone() || "";
    var f = formatters[z] || (formatters[z] = new Intl.DateTimeFormat("en-GB", {
      timeZone: z || undefined, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit"
    }));
    var o = {};
    f.formatToParts(d).forEach(function (p) { o[p.type] = p.value; });
    return o;
  }
  function fmt(d, kind) {
    var p = parts(d), clock = p.hour + ":" + p.minute + ":" + p.second;
    if (kind !== "stamp") { return clock; }
    return p.year + "-" + p.month + "-" + p.day + " " + clock + "." + String(d.getMilliseconds()).padStart(3, "0");
  }
  function zoneName() { return zone() || Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"; }
  function localize(root) {
    root.querySelectorAll("time[data-fmt]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      var text = fmt(d, el.dataset.fmt);
      if (el.textContent !== text) { el.textContent = text; }
      var title = d.toISOString().replace("T", " ").replace("Z", " UTC");
      if (el.title !== title) { el.title = title; }
    });
    root.querySelectorAll("[data-tz-label]").forEach(function (el) {
      var text = "times in " + zoneName();
      if (el.textContent !== text) { el.textContent = text; }
    });
  }
  // Every swap (a frame, a region re-read) may bring new times.
  new MutationObserver(function () { localize(document); })
    .observe(document.documentElement, { subtree: true, childList: true });

  // Stale regions: while the socket is down the figures may be out of date,
  // so they are dimmed and every region heading says as of when.
  function markStale(on) {
    stale = on;
    document.body.classList.toggle("offline", on);
    document.querySelectorAll("[data-asof]").forEach(function (el) { el.remove(); });
    if (!on) { return; }
    document.querySelectorAll("main h2, .wall-grid h2").forEach(function (tag) {
      var s = document.createElement("span");
      s.className = "asof";
      s.dataset.asof = "";
      s.dataset.testid = "asof";
      s.textContent = "as of " + fmt(lastFrame, "clock");
      tag.appendChild(s);
    });
  }

  function show(state) {
    document.querySelectorAll("[data-conn]").forEach(function (el) {
      el.dataset.state = state;
      el.textContent = state === "open" ? "live" :
        state === "closed" ? "connection lost since " + fmt(lostSince, "clock") : "connecting…";
    });
    document.querySelectorAll("[data-conn-banner]").forEach(function (el) {
      el.hidden = state !== "closed";
      if (state === "closed") {
        el.textContent = "Connection lost since " + fmt(lostSince, "clock") + " — figures as of " +
          fmt(lastFrame, "clock") + ", reconnecting…";
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); show("connecting"); });
  document.addEventListener("htmx:wsOpen", function () {
    // On every open, the first included: what changed between the page's
    // render (or the loss) and now was in no frame this page saw. The hub's
    // snapshot, the first frame, replaces every region it renders; the
    // others are read again here.
    lostSince = null;
    connected = true;
    show("open");
    refreshAll();
  });
  document.addEventListener("htmx:wsClose", function () {
    connected = false;
    if (!lostSince) { lostSince = new Date(); }
    show("closed");
    markStale(true);
  });

  // A press that never reached the server says so where its answer goes,
  // rather than nothing at all.
  function pressFailed(e, text) {
    var t = e.detail.target;
    if (!t || !document.body.contains(t)) { return; }
    var s = document.createElement("span");
    s.className = "result-err";
    s.dataset.testid = "result";
    s.dataset.ok = "false";
    s.textContent = "✗ " + text;
    t.replaceChildren(s);
  }
  document.addEventListener("htmx:sendError", function (e) {
    pressFailed(e, "not sent: the server cannot be reached (" + fmt(new Date(), "clock") +
      "). Nothing was done; press again once the page is live.");
  });
  document.addEventListener("htmx:responseError", function (e) {
    var x = e.detail.xhr;
    if (x && x.status === 404 && e.detail.target && e.detail.target.hasAttribute("data-live")) { return; }
    pressFailed(e, "the server answered " + (x ? x.status : "an error") + "; the page may be out of date");
  });

  // Live regions. The hub cannot know which rows a page shows, so each frame
  // appends to #changes what changed (<i data-live="outbox" data-id="…">),
  // and every element with a matching data-live (narrowed by data-live-id)
  // is read again from the server, rendered by the same templ component.
  // At most once a second per region; not while the socket is down (all are
  // read again when it opens) or the tab is hidden; held back while the
  // pointer is on it or text in it is selected (a row must not move under a
  // click), for a few seconds at most; keyboard focus is put back on the
  // same control of the same row; and the button's answer stays.
  var refreshEvery = 1000, holdAtMost = 10000;
  var regions = {}; // region id -> {busy, again, stale, last}

  function matches(region, mark) {
    if (region.dataset.live !== mark.dataset.live) { return false; }
    var want = region.dataset.liveId, got = mark.dataset.id;
    return !want || !got || want === got;
  }

  function inUse(el) {
    var sel = window.getSelection();
    return el.matches(":hover") || (sel && !sel.isCollapsed && el.contains(sel.anchorNode));
  }

  // focusKey names the focused control inside el so that its twin can be
  // found after the swap: its row's data-id and its data-testid or href.
  function focusKey(el) {
    var a = document.activeElement;
    if (!a || a === el || !el.contains(a)) { return null; }
    var row = a.closest("[data-id]");
    return { row: row ? row.dataset.id : null, testid: a.dataset.testid, href: a.getAttribute("href") };
  }

  function refocus(id, key) {
    var el = document.getElementById(id);
    if (!key || !el) { return; }
    var scope = el;
    if (key.row) {
      scope = Array.prototype.find.call(el.querySelectorAll("[data-id]"), function (r) { return r.dataset.id === key.row; }) || el;
    }
    var target = Array.prototype.find.call(scope.querySelectorAll("a, button, input, select"), function (c) {
      return key.testid ? c.dataset.testid === key.testid : c.getAttribute("href") === key.href;
    });
    if (target) { target.focus({ preventScroll: true }); }
  }

  function refresh(id) {
    var r = regions[id] || (regions[id] = { busy: false, again: false, stale: false, last: 0 });
    if (r.busy) { r.again = true; return; }
    r.busy = true;
    var asked = Date.now();
    setTimeout(function run() {
      var el = document.getElementById(id);
      if (!el || !connected || document.hidden) {
        r.busy = r.again = false;
        r.stale = !!el; // read again on open or when shown
        return;
      }
      if (inUse(el) && Date.now() - asked < holdAtMost) { setTimeout(run, refreshEvery); return; }
      r.last = Date.now();
      r.stale = false;
      var key = focusKey(el);
      var done = function () {
        refocus(id, key);
        r.busy = false;
        if (r.again) { r.again = false; refresh(id); }
      };
      // Its own fragment endpoint (one query, shared by every viewer), or
      // else the page it is on.
      var src = el.dataset.liveSrc || location.pathname + location.search;
      htmx.ajax("GET", src, { target: el, select: "#" + id, swap: "outerHTML" })
        .then(done, done);
    }, Math.max(0, r.last + refreshEvery - Date.now()));
  }

  function refreshAll() {
    document.querySelectorAll("[data-live][id]").forEach(function (el) { refresh(el.id); });
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { return; }
    Object.keys(regions).forEach(function (id) { if (regions[id].stale) { refresh(id); } });
  });

  // What a live region showed is gone (a deleted message): load the page
  // again, which says so, rather than keep showing it with its buttons.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.xhr.status === 404 && e.detail.target && e.detail.target.hasAttribute("data-live")) {
      e.detail.shouldSwap = false;
      e.detail.isError = false; // expected: no error in the console
      location.reload();
    }
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    lastFrame = new Date();
    if (stale && connected) { markStale(false); } // the snapshot is in
    var box = document.getElementById("changes");
    if (!box || !box.firstElementChild) { return; }
    var marks = Array.prototype.slice.call(box.querySelectorAll("[data-live]"));
    box.replaceChildren();
    document.querySelectorAll("[data-live][id]").forEach(function (el) {
      if (marks.some(function (m) { return matches(el, m); })) { refresh(el.id); }
    });
  });

  // The hub sends every page the overview's fragments; a page swaps those
  // it has. The others are dropped here, before htmx would report each
  // missing target as an error.
  htmx.defineExtension("canal-present", {
    transformResponse: function (text, xhr) {
      if (xhr) { return text; } // an HTTP answer, not a socket frame
      var tpl = document.createElement("template");
      tpl.innerHTML = text;
      Array.prototype.slice.call(tpl.content.children).forEach(function (el) {
        var oob = el.getAttribute("hx-swap-oob");
        if (!oob) { return; }
        var at = oob.indexOf(":");
        var sel = at > 0 ? oob.slice(at + 1) : (el.id ? "#" + CSS.escape(el.id) : null);
        if (sel && !document.querySelector(sel)) { el.remove(); }
      });
      return tpl.innerHTML;
    }
  });
})();
