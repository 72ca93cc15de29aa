"use strict";
// The Jobs page: the chosen heartbeat check's run durations, one bar per run.
document.addEventListener("DOMContentLoaded", function () {
  const data = document.getElementById("durations-data");
  const figure = document.getElementById("chart-durations");
  if (!data || !figure) return;
  const runs = JSON.parse(data.textContent);
  const style = getComputedStyle(document.documentElement);
  const text = style.getPropertyValue("--muted").trim(), grid = style.getPropertyValue("--line").trim();
  const colors = { success: "#1f9d55", fail: "#c0392b", orphaned: "#b8860b", stopped: "#8e44ad" };
  new Chart(figure.querySelector("canvas"), {
    type: "bar",
    data: {
      labels: runs.map(function (r) { return PT.time(r.started); }),
      datasets: [{
        label: "Duration", unit: "s",
        backgroundColor: runs.map(function (r) { return colors[r.status] || "#2f6fde"; }),
        data: runs.map(function (r) { return r.duration; }),
      }],
    },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      scales: {
        x: { ticks: { color: text, maxRotation: 0, autoSkipPadding: 16 }, grid: { color: grid } },
        y: { beginAtZero: true, grid: { color: grid },
          ticks: { color: text, callback: function (value) { return value + " s"; } } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: {
          label: function (ctx) { return runs[ctx.dataIndex].status + ": " + ctx.parsed.y.toFixed(1) + " s"; },
        } },
      },
    },
  });
});
