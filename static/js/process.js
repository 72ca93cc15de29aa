"use strict";
// Process page: its history over its life or a range, and live details on demand.
document.addEventListener("DOMContentLoaded", function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const p = "process:" + page.process + ":";
  // Metric names only: each series brings its label and unit from the API.
  const defs = [
    { id: "cpu", title: "CPU (of one core)", metrics: [{ metric: p + "cpu_percent" }] },
    { id: "rss", title: "Resident memory", metrics: [{ metric: p + "rss" }] },
    { id: "io", title: "Disk I/O", metrics: [{ metric: p + "read_bps" }, { metric: p + "write_bps" }] },
    { id: "threads", title: "Threads", metrics: [{ metric: p + "threads" }] },
  ];
  if (page.gpu) defs.push({ id: "gpu", title: "GPU memory", metrics: [{ metric: p + "gpu_memory" }] });
  const metrics = [].concat.apply([], defs.map(function (d) { return d.metrics.map(function (m) { return m.metric; }); }));
  const info = document.getElementById("range-info");
  const container = document.getElementById("charts");
  const charts = defs.map(function (def) {
    return PT.charts.create(container, def, { onZoom: function (from, to) { range.zoom(from, to); } });
  });
  document.addEventListener("pt:theme", function () { PT.charts.recolor(charts); });

  async function load(from, to) {
    info.textContent = "loading…";
    try {
      const data = await PT.charts.fetchSeries(page.timeseries, metrics, from, to);
      charts.forEach(function (chart) { PT.charts.fill(chart, data.series, from, to, data.step); });
      info.textContent = "one point per " + PT.step(data.step);
    } catch (error) {
      info.textContent = String(error.message || error);
    }
  }

  const range = PT.range.create(document.querySelector(".range-picker"), "life", ["life"], function (state) {
    let from = state.from, to = state.to;
    if (state.key === "life") {
      const pad = page.interval * 1000;
      from = page.first_seen - pad;
      to = Math.max(page.last_seen + pad, page.first_seen + 60e3);
    }
    load(from, to);
    return [from, to];
  });
  range.start();

  const liveButton = document.getElementById("load-live");
  if (liveButton) {
    liveButton.addEventListener("click", async function () {
      const out = document.getElementById("live-output");
      out.textContent = "reading…";
      const response = await fetch(liveButton.dataset.url);
      out.innerHTML = response.ok ? await response.text() : "<p class='error'>could not read: " + response.status + "</p>";
    });
  }
});
