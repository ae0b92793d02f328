// Progressive enhancement for the map: show the hovered or focused region in the side panel,
// and on the "now" view recolour the map from /api/v1/live every 10 s without a reload. The
// page works without it (every region is a link with a tooltip; "now" as of the page load).
(function () {
  var panel = document.getElementById("hovered");
  var map = document.querySelector("svg.map");
  if (!panel || !map) return;
  function show(e) {
    var a = e.target.closest("a.region");
    if (!a) return;
    panel.textContent = a.getAttribute("data-name") + ": " + a.getAttribute("data-label");
  }
  map.addEventListener("mouseover", show);
  map.addEventListener("focusin", show);

  var source = map.getAttribute("data-live");
  if (!source) return;
  // [[upper bound or null, fill], ...]: the same bands the server coloured the page with.
  var bands = JSON.parse(map.getAttribute("data-bands") || "[]");
  var slotText = document.getElementById("live-slot");
  var updated = document.getElementById("live-updated");

  function percent(ratio) {
    return Math.round(ratio * 100) + " %";
  }
  // The same words and fills as the server's (web/src/live.rs, routes/map.rs).
  function shown(r) {
    if (r.meters === 0 || r.household_kwh === null) {
      return ["url(#hatch)", "no readings yet"];
    }
    if (!r.complete) {
      return ["url(#hatch-incomplete)",
        "incomplete: " + r.meters + " of " + r.registered_meters + " meters reported"];
    }
    var kwh = r.household_kwh.toFixed(2) + " kWh a household";
    if (r.vs_typical === null) return ["url(#hatch)", kwh + ", no typical yet"];
    var fill = bands[bands.length - 1][1];
    for (var i = 0; i < bands.length; i++) {
      if (bands[i][0] === null || r.vs_typical < bands[i][0]) { fill = bands[i][1]; break; }
    }
    return [fill, kwh + ", " + percent(r.vs_typical) + " of typical"];
  }
  function slotLabel(iso) {
    var start = new Date(iso);
    var end = new Date(start.getTime() + 30 * 60 * 1000);
    var time = { timeZone: "Europe/London", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    var zone = end.toLocaleTimeString("en-GB", { timeZone: "Europe/London", timeZoneName: "short" })
      .split(" ").pop();
    var day = start.toLocaleDateString("en-GB",
      { timeZone: "Europe/London", day: "numeric", month: "short", year: "numeric" });
    return start.toLocaleTimeString("en-GB", time) + "–" + end.toLocaleTimeString("en-GB", time) +
      " " + zone + ", " + day;
  }
  function apply(now) {
    now.regions.forEach(function (r) {
      var a = map.querySelector('a.region[data-code="' + r.code + '"]');
      if (!a) return;
      var s = shown(r);
      var path = a.querySelector("path");
      path.setAttribute("fill", s[0]);
      a.setAttribute("data-label", s[1]);
      a.setAttribute("aria-label", r.name + ": " + s[1]);
      var title = path.querySelector("title");
      if (title) title.textContent = r.name + ": " + s[1];
    });
    if (slotText) slotText.textContent = slotLabel(now.slot);
    if (updated) {
      updated.textContent = "Updated " + new Date().toLocaleTimeString("en-GB",
        { timeZone: "Europe/London", hourCycle: "h23" }) + ".";
    }
    map.setAttribute("data-updated", String(Date.now()));
  }
  function poll() {
    fetch(source, { headers: { Accept: "application/json" } })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (now) { if (now) apply(now); })
      .catch(function () { /* the next poll tries again */ });
  }
  setInterval(poll, 10000);
})();
