/* The console's map: a uPlot scatter of the projected points (prototypes, exemplars,
   unknowns), drag to zoom on both axes, hover for a point's label and text. */
(function () {
  "use strict";
  var KINDS = ["prototype", "exemplar", "unknown"];
  var STYLE = {
    prototype: { stroke: "#123a7a", fill: "#2f6fd6", size: 13 },
    exemplar: { stroke: "#6f8fbf", fill: "rgba(111,143,191,0.35)", size: 6 },
    unknown: { stroke: "#b3261e", fill: "rgba(230,80,60,0.75)", size: 7 },
  };

  function hover(u, d, order, out) {
    var left = u.cursor.left, top = u.cursor.top;
    if (left == null || left < 0) { return; }
    var best = -1, bestDist = 14 * 14;
    for (var j = 0; j < order.length; j++) {
      var i = order[j];
      var dx = u.valToPos(d.x[i], "x") - left, dy = u.valToPos(d.y[i], "y") - top;
      var dist = dx * dx + dy * dy;
      if (dist < bestDist) { best = i; bestDist = dist; }
    }
    if (best < 0) { return; }
    var what = d.kind[best] === "unknown" ? "unknown item " + d.ref[best] : d.kind[best] + " of " + d.label[best];
    out.textContent = what + (d.text[best] ? " — " + d.text[best] : "");
    out.dataset.label = d.label[best];
  }

  function render(el, d) {
    var n = d.x.length;
    el.dataset.points = String(n);
    if (el._plot) { el._plot.destroy(); el._plot = null; }
    el.innerHTML = "";
    var out = el.parentNode.querySelector(".map-hover") || document.createElement("div");
    if (!n) { el.textContent = "no points yet"; el.dataset.rendered = "0"; return; }
    var order = [];
    for (var i = 0; i < n; i++) { order.push(i); }
    order.sort(function (a, b) { return d.x[a] - d.x[b]; });
    var xs = order.map(function (i) { return d.x[i]; });
    var data = [xs];
    var series = [{}];
    KINDS.forEach(function (k) {
      data.push(order.map(function (i) { return d.kind[i] === k ? d.y[i] : null; }));
      var s = STYLE[k];
      series.push({
        label: k, stroke: s.stroke, paths: function () { return null; },
        points: { show: true, size: s.size, width: 1, stroke: s.stroke, fill: s.fill },
      });
    });
    var opts = {
      width: Math.max(320, el.clientWidth || 900), height: 520,
      legend: { show: false },
      scales: { x: { time: false }, y: {} },
      axes: [{ label: "PC 1" }, { label: "PC 2" }],
      cursor: { drag: { x: true, y: true, uni: 20 }, points: { show: false } },
      series: series,
      hooks: { setCursor: [function (u) { hover(u, d, order, out); }] },
    };
    el._plot = new uPlot(opts, data, el);
    el.dataset.rendered = String(n);
  }

  function load(el, url) {
    if (!el) { return; }
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        el.dataset.storeVersion = String(d.store_version);
        render(el, d);
      });
  }

  window.slMap = { render: render, load: load };
})();
