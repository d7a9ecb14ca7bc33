/* The console's live updates: one server-sent event stream per page (at most one
   event a second), which refreshes the header's numbers and the overview's charts,
   and asks htmx to refetch a section when its version moved. */
(function () {
  "use strict";
  var FMT = {
    pct: function (v) { return v == null ? "n/a" : (100 * v).toFixed(1) + "%"; },
  };
  var EVENTS = { classes: "classes-changed", unknowns: "unknowns-changed",
                 incidents: "incidents-changed", results: "results-changed" };
  var last = null, pending = {}, charts = {}, classKeys = "";

  function numbers(o) {
    document.querySelectorAll("[data-k]").forEach(function (el) {
      var k = el.dataset.k;
      if (!(k in o)) { return; }
      var v = o[k];
      el.textContent = el.dataset.fmt ? FMT[el.dataset.fmt](v) : (v == null ? "n/a" : v);
    });
    document.body.dataset.itemsTotal = String(o.items_total);
  }

  function readings(s) {
    document.querySelectorAll("[data-s]").forEach(function (el) {
      var v = s ? s[el.dataset.s] : null;
      el.textContent = v == null ? "n/a" : v;
    });
    var lag = document.getElementById("lag");
    if (!lag) { return; }
    var rows = "";
    if (s && s.lag && Object.keys(s.lag).length) {
      Object.keys(s.lag).forEach(function (tp) {
        rows += "<tr><th>" + tp.replace(/</g, "&lt;") + "</th><td>" + s.lag[tp] + "</td></tr>";
      });
    } else { rows = "<tr><td>n/a</td></tr>"; }
    lag.innerHTML = rows;
  }

  function timeline(marks) {
    var ol = document.getElementById("timeline");
    if (!ol) { return; }
    ol.textContent = "";
    if (!marks.length) { ol.innerHTML = '<li class="muted">nothing yet</li>'; return; }
    marks.slice(-20).reverse().forEach(function (m) {
      var li = document.createElement("li");
      li.className = m.kind;
      li.textContent = new Date(m.at * 1000).toISOString().slice(11, 19) + "  " +
        (m.kind === "incident" ? "drift incident, " : "discovered ") + m.label;
      ol.appendChild(li);
    });
  }

  function markers() {
    return { hooks: { draw: [function (u) {
      var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      ctx.save();
      (u._marks || []).forEach(function (m) {
        var x = u.valToPos(m.at, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
        ctx.strokeStyle = m.kind === "incident" ? "#c62828" : "#2e7d32";
        ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      });
      ctx.restore();
    }] } };
  }

  var PALETTE = ["#2f6fd6", "#e08a00", "#2e7d32", "#8e24aa", "#00897b", "#c2185b", "#5d4037",
                 "#546e7a", "#9e9e9e", "#b3261e"];

  function overviewCharts(o, marks) {
    var s = o.series, el = document.getElementById("chart-items");
    if (!el) { return; }
    var width = Math.max(320, el.clientWidth || 600);
    var data = [s.x, s.items, s.unknown_rate];
    if (!charts.items) {
      charts.items = new uPlot({
        width: width, height: 240,
        plugins: [markers()],
        scales: { rate: { range: [0, 1] } },
        axes: [{}, { label: "items/s" }, { scale: "rate", side: 1, label: "unknown rate", grid: { show: false } }],
        series: [{}, { label: "items/s", stroke: "#2f6fd6", width: 1.5 },
                 { label: "unknown rate", stroke: "#c62828", scale: "rate", width: 1, spanGaps: true }],
      }, data, el);
    }
    charts.items._marks = marks;
    charts.items.setData(data);
    var cel = document.getElementById("chart-classes");
    var keys = Object.keys(s.by_class);
    var cdata = [s.x].concat(keys.map(function (k) { return s.by_class[k]; }));
    if (!charts.classes || keys.join("\u0001") !== classKeys) {
      if (charts.classes) { charts.classes.destroy(); }
      classKeys = keys.join("\u0001");
      charts.classes = new uPlot({
        width: width, height: 240,
        series: [{}].concat(keys.map(function (k, i) {
          return { label: k, stroke: PALETTE[i % PALETTE.length], width: 1.2 };
        })),
      }, cdata, cel);
    } else {
      charts.classes.setData(cdata);
    }
    document.body.dataset.chartPoints = String(s.x.length);
  }

  function busy(section) {
    var el = document.querySelector('[data-refresh="' + section + '"]');
    if (!el) { return false; }
    var active = document.activeElement;
    if (active && el.contains(active) && active.tagName !== "BUTTON") { return true; }
    return !!el.querySelector("input[type=checkbox]:checked");
  }

  function versions(v) {
    Object.keys(EVENTS).forEach(function (k) {
      if (last && last[k] !== v[k]) { pending[k] = true; }
      if (pending[k] && !busy(k)) {
        delete pending[k];
        htmx.trigger(document.body, EVENTS[k]);
        if (k === "classes" || k === "unknowns") {
          var map = document.getElementById("map");
          if (map && document.body.dataset.page === "map") { window.slMap.load(map, "/map.json"); }
        }
      }
    });
    last = v;
  }

  function connect(page) {
    var live = document.getElementById("live");
    var source = new EventSource("/events?page=" + encodeURIComponent(page));
    source.addEventListener("update", function (e) {
      var p = JSON.parse(e.data);
      numbers(p.overview);
      readings(p.stats);
      if (page === "overview") {
        overviewCharts(p.overview, p.marks);
        timeline(p.marks);
      }
      versions(p.versions);
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      if (live) { live.textContent = "live"; live.className = "live on"; }
    });
    source.onerror = function () { if (live) { live.textContent = "reconnecting…"; live.className = "live off"; } };
  }

  window.slConsole = { connect: connect };
})();
