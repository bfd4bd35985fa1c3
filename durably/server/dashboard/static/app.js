// Progressive enhancement only: every page works without this script.
(function () {
  "use strict";
  var REFRESH_MS = 4000;

  // Live parts: re-fetch this page (or the region's data-live-src) and swap the [data-live]
  // region, unless the user is typing in it or has a disclosure open; ticked boxes stay ticked.
  function typing(live) {
    var el = document.activeElement;
    if (!el || el === document.body || !live.contains(el)) return false;
    var tag = el.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || (tag === "input" && !/^(checkbox|radio|submit|button)$/.test(el.type));
  }
  function refresh() {
    var live = document.querySelector("[data-live]");
    if (!live || document.hidden || typing(live)) return;
    if (live.querySelector("details[open]")) return;
    var src = live.getAttribute("data-live-src") || window.location.href;
    fetch(src, { credentials: "same-origin", headers: { "X-Requested-With": "durably-live" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html || typing(live)) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("#" + live.id);
        if (!fresh) return;
        var ticked = {};
        live.querySelectorAll("input[type=checkbox]").forEach(function (b) { ticked[b.name + "=" + b.value] = b.checked; });
        live.innerHTML = fresh.innerHTML;
        live.querySelectorAll("input[type=checkbox]").forEach(function (b) {
          var k = b.name + "=" + b.value;
          if (k in ticked) b.checked = ticked[k];
        });
        if (!fresh.hasAttribute("data-live")) live.removeAttribute("data-live");
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {});
  }
  setInterval(refresh, REFRESH_MS);

  // Confirmations for consequential buttons (Run now, Cancel, bulk Replay).
  document.addEventListener("submit", function (ev) {
    var el = ev.submitter && ev.submitter.getAttribute("data-confirm") ? ev.submitter : ev.target;
    var msg = el.getAttribute && el.getAttribute("data-confirm");
    if (msg && !(ev.submitter && ev.submitter.name === "dry_run") && !window.confirm(msg)) ev.preventDefault();
  }, true);

  // JSON fields: say what is wrong before sending.
  document.addEventListener("input", function (ev) {
    if (!ev.target.hasAttribute || !ev.target.hasAttribute("data-json")) return;
    var form = ev.target.form, out = form.querySelector(".json-error"), msg = "";
    try {
      var v = JSON.parse(ev.target.value || "{}");
      if (v === null || typeof v !== "object" || Array.isArray(v)) msg = "Data must be a JSON object, like {\"clientId\": \"c1\"}.";
    } catch (e) { msg = "Not valid JSON: " + e.message; }
    if (out) { out.textContent = msg; out.hidden = !msg; }
    var btn = form.querySelector("button[type=submit]");
    if (btn) btn.disabled = !!msg;
  });
})();
