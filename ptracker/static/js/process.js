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
      if (range.current().key === "life") range.select("life");
    }
    if (!dl.hasAttribute("data-running")) clearInterval(timer);
  }
  const timer = facts.querySelector("dl[data-running]")
    ? setInterval(refresh, Math.max(page.interval, 2) * 1000)
    : null;

  // Runs of the same program: average CPU and peak memory of each, oldest first.
  const runsData = document.getElementById("runs-data");
  if (runsData) runsChart(JSON.parse(runsData.textContent));

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

function runsChart(runs) {
  const figure = document.getElementById("chart-runs");
  const style = getComputedStyle(document.documentElement);
  const text = style.getPropertyValue("--muted").trim(), grid = style.getPropertyValue("--line").trim();
  const labels = runs.map(function (r) { return "pid " + r.pid + " · " + PT.time(r.started); });
  const chart = new Chart(figure.querySelector("canvas"), {
    type: "bar",
    data: {
      labels: labels,
      datasets: [
        { label: "Peak memory", unit: "bytes", yAxisID: "y", backgroundColor: "#2f6fde",
          data: runs.map(function (r) { return r.rss_max; }) },
        { label: "Average CPU", unit: "%", yAxisID: "y1", backgroundColor: "#e0731b",
          data: runs.map(function (r) { return r.cpu_avg; }) },
      ],
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      scales: {
        x: { ticks: { color: text, maxRotation: 0, autoSkipPadding: 16,
          callback: function (value, i) { return runs[i].current ? "this run" : "pid " + runs[i].pid; } },
          grid: { color: grid } },
        y: { position: "left", beginAtZero: true, grid: { color: grid },
          ticks: { color: text, callback: function (value) { return PT.format(value, "bytes"); } } },
        y1: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
          ticks: { color: text, callback: function (value) { return PT.format(value, "%"); } } },
      },
      plugins: {
        legend: { labels: { color: text, boxWidth: 12 } },
        tooltip: { callbacks: {
          label: function (ctx) { return ctx.dataset.label + ": " + PT.format(ctx.parsed.y, ctx.dataset.unit); },
        } },
      },
    },
  });
  document.addEventListener("pt:theme", function () {
    const s = getComputedStyle(document.documentElement);
    const t = s.getPropertyValue("--muted").trim(), g = s.getPropertyValue("--line").trim();
    ["x", "y", "y1"].forEach(function (k) { chart.options.scales[k].ticks.color = t; });
    chart.options.scales.x.grid.color = g;
    chart.options.scales.y.grid.color = g;
    chart.options.plugins.legend.labels.color = t;
    chart.update("none");
  });
}
