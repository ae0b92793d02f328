// Progress where people wait, without reloading the page: every element with
// data-progress="URL" is refreshed every two seconds from that URL's JSON, whose `items`
// each name the element (`id`) they update: a <progress> (value, max) and its text. When
// nothing is in progress any more the page is loaded again once, to show the outcome.
(function () {
  var root = document.querySelector("[data-progress]");
  if (!root) return;
  var url = root.getAttribute("data-progress");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) return;
        var items = body.items || [];
        items.forEach(function (it) {
          var bar = document.getElementById(it.id);
          if (bar && it.max) { bar.max = it.max; bar.value = Math.min(it.value, it.max); }
          if (bar && !it.max) { bar.removeAttribute("value"); }
          var text = document.getElementById(it.id + "-text");
          if (text) text.textContent = it.text;
        });
        if (items.length === 0 || items.every(function (it) { return it.done; })) {
          location.reload();
          return;
        }
        setTimeout(tick, 2000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
