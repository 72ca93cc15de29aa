"use strict";
// Process page: its history over its life or a range, and live details on demand.
document.addEventListener("DOMContentLoaded", function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const p = "process:" + page.process + ":";
  const defs = [
    { id: "cpu", title: "CPU (of one core)", metrics: [{ metric: p + "cpu_percent", label: "CPU", unit: "%" }] },
    { id: "rss", title: "Resident memory", metrics: [{ metric: p + "rss", label: "RSS", unit: "bytes" }] },
    { id: "io", title: "Disk I/O", metrics: [
      { metric: p + "read_bps", label: "read", unit: "bytes/s" }, { metric: p + "write_bps", label: "write", unit: "bytes/s" }] },
    { id: "threads", title: "Threads", metrics: [{ metric: p + "threads", label: "threads", unit: "" }] },
    { id: "gpu", title: "GPU memory", metrics: [{ metric: p + "gpu_memory", label: "GPU memory", unit: "bytes" }] },
  ];
  const metrics = [].concat.apply([], defs.map(function (d) { return d.metrics.map(function (m) { return m.metric; }); }));
  const info = document.getElementById("range-info");
  const container = document.getElementById("charts");
  const charts = defs.map(function (def) {
    return PT.charts.create(container, def, { onZoom: function (from, to) { show(from, to, "zoomed"); } });
  });
  document.addEventListener("pt:theme", function () { PT.charts.recolor(charts); });

  async function show(from, to, key) {
    document.querySelectorAll(".range-picker [data-range]").forEach(function (b) { b.classList.toggle("active", b.dataset.range === key); });
    info.textContent = "loading…";
    try {
      const data = await PT.charts.fetchSeries(page.timeseries, metrics, from, to);
      charts.forEach(function (chart) { PT.charts.fill(chart, data.series, from, to, data.step); });
      info.textContent = "one point per " + PT.step(data.step);
    } catch (error) {
      info.textContent = String(error.message || error);
    }
  }

  function life() {
    const pad = page.interval * 1000;
    show(page.first_seen - pad, Math.max(page.last_seen + pad, page.first_seen + 60e3), "life");
  }
  document.querySelectorAll(".range-picker [data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.range === "life") return life();
      const now = Date.now();
      show(now - RANGES[button.dataset.range], now, button.dataset.range);
    });
  });
  life();

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
