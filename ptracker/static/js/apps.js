"use strict";
// The Apps page: p95 latency per minute of each LLM model and checkpoint operation,
// with the CPU of the app's host (and of the process that sent the latest record, when
// the hub tracks it) on a second axis.
document.addEventListener("DOMContentLoaded", async function () {
  const data = document.getElementById("apps-chart");
  const figure = document.getElementById("chart-latency");
  if (!data || !figure) return;
  const page = JSON.parse(data.textContent);
  const style = getComputedStyle(document.documentElement);
  const text = style.getPropertyValue("--muted").trim(), grid = style.getPropertyValue("--line").trim();
  const palette = ["#2f6fde", "#1f9d55", "#8e44ad", "#b8860b", "#c0392b", "#16a085"];
  const datasets = page.series.map(function (s, i) {
    return {
      label: s.label + " p95", unit: "s", yAxisID: "y", borderColor: palette[i % palette.length],
      pointRadius: 2, spanGaps: false,
      data: s.points.map(function (p) { return { x: Date.parse(p.t), y: p.p95 }; }),
    };
  });
  if (page.timeseries) {
    try {
      const metrics = ["cpu_percent"];
      if (page.process) metrics.push("process:" + page.process.id + ":cpu_percent");
      const cpu = await PT.charts.fetchSeries(page.timeseries, metrics, page.from, page.to);
      cpu.series.forEach(function (s, i) {
        const label = i === 0 ? page.host + " CPU"
          : page.process.name + " (pid " + page.process.pid + ") CPU";
        datasets.push({
          label: label, unit: "%", yAxisID: "cpu", borderColor: i === 0 ? "#999" : "#e67e22",
          borderDash: [4, 3], pointRadius: 0,
          data: s.points.map(function (p) { return { x: p[0], y: p[1] }; }),
        });
      });
    } catch (e) { /* the latency chart alone */ }
  }
  const scales = {
    x: { type: "time", min: page.from, max: page.to, ticks: { color: text, maxRotation: 0 }, grid: { color: grid } },
    y: { beginAtZero: true, grid: { color: grid }, ticks: { color: text, callback: function (v) { return v + " s"; } } },
  };
  if (page.timeseries) {
    scales.cpu = { position: "right", min: 0, suggestedMax: 100, grid: { drawOnChartArea: false },
      ticks: { color: text, callback: function (v) { return v + " %"; } } };
  }
  figure.chart = new Chart(figure.querySelector("canvas"), {
    type: "line",
    data: { datasets: datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, scales: scales,
      plugins: { legend: { labels: { color: text } } },
    },
  });
});
