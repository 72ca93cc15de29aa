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

  // While the process may run, its facts are reloaded every sample interval (a server
  // partial), and the whole-life charts follow its last sample.
  const facts = document.getElementById("process-facts");
  async function refresh() {
    try {
      const response = await fetch(facts.dataset.url, { headers: { Accept: "text/html" } });
      if (!response.ok) return;
      facts.innerHTML = await response.text();
    } catch (error) {
      return; // offline for a moment: the next tick tries again
    }
    const dl = facts.querySelector("dl");
    const lastSeen = Number(dl.dataset.lastSeen) * 1000;
    if (lastSeen > page.last_seen) {
      page.last_seen = lastSeen;
      const active = document.querySelector(".range-picker [data-range].active");
      if (active && active.dataset.range === "life") life();
    }
    if (!dl.hasAttribute("data-running")) clearInterval(timer);
  }
  const timer = facts.querySelector("dl[data-running]")
    ? setInterval(refresh, Math.max(page.interval, 2) * 1000)
    : null;

  const liveButton = document.getElementById("load-live");
  if (liveButton) {
    const out = document.getElementById("live-output");
    async function load(init) {
      out.textContent = "reading…";
      const response = await fetch(liveButton.dataset.url, init);
      out.innerHTML = response.ok ? await response.text() : "<p class='error'>could not read: " + response.status + "</p>";
    }
    liveButton.addEventListener("click", function () { load(); });
    // "Reveal masked values": the panel's own form, posted (with its CSRF token) in place.
    out.addEventListener("submit", function (event) {
      if (!event.target.matches("form[data-reveal]")) return;
      event.preventDefault();
      const body = new FormData(event.target);
      body.set("reveal", "1");
      load({ method: "POST", body: body, headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken") } });
    });
  }
});
