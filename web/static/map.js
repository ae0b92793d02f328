// Progressive enhancement for the map: show the hovered or focused region in the side panel.
// The page works without it (every region is a link with a tooltip).
(function () {
  var panel = document.getElementById("hovered");
  if (!panel) return;
  function show(e) {
    var a = e.target.closest("a.region");
    if (!a) return;
    panel.textContent = a.getAttribute("data-name") + ": " + a.getAttribute("data-label");
  }
  var map = document.querySelector("svg.map");
  map.addEventListener("mouseover", show);
  map.addEventListener("focusin", show);
})();
