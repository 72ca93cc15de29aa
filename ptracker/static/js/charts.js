"use strict";
// Line charts of time series from /api/v1/hosts/<id>/timeseries, with drag-to-zoom.
PT.charts = (function () {
  if (window.ChartZoom) Chart.register(window.ChartZoom);
  const COLORS = ["#2f6fde", "#e0731b", "#1f9d55", "#c0392b", "#8e44ad", "#16a2b8", "#b8860b", "#d63384"];

  function themeColors() {
    const style = getComputedStyle(document.documentElement);
    return { text: style.getPropertyValue("--muted").trim(), grid: style.getPropertyValue("--line").trim() };
  }

  // def: {id, title, metrics: [{metric, label, unit, axis}]}; handlers: onZoom(from, to), onPick(ms)
  function create(container, def, handlers) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = "chart-" + def.id;
    figure.innerHTML = "<figcaption></figcaption><div class='canvas-box'><canvas></canvas></div>";
    figure.querySelector("figcaption").textContent = def.title;
    container.appendChild(figure);
    const colors = themeColors();
    const units = {};
    def.metrics.forEach(function (m) { units[m.axis || "y"] = m.unit; });
    const scales = {
      x: { type: "time", ticks: { color: colors.text, maxRotation: 0, autoSkipPadding: 16 }, grid: { color: colors.grid } },
    };
    Object.keys(units).forEach(function (axis, i) {
      scales[axis] = {
        position: i === 0 ? "left" : "right",
        beginAtZero: true,
        suggestedMax: units[axis] === "%" ? 100 : undefined,
        // Whole bytes: an idle disk's 0–1 B/s axis must not read "0 B/s, 0 B/s, 1 B/s".
        ticks: { color: colors.text, precision: units[axis].indexOf("bytes") === 0 ? 0 : undefined,
          callback: function (v) { return PT.format(v, units[axis]); } },
        grid: { color: colors.grid, drawOnChartArea: i === 0 },
      };
    });
    const chart = new Chart(figure.querySelector("canvas"), {
      type: "line",
      data: {
        datasets: def.metrics.map(function (m, i) {
          return {
            label: m.label, data: [], yAxisID: m.axis || "y", borderColor: COLORS[i % COLORS.length],
            backgroundColor: COLORS[i % COLORS.length], borderWidth: 1.5, pointRadius: 0, pointHitRadius: 6,
            tension: 0.15, spanGaps: false, parsing: false, metric: m.metric, unit: m.unit,
          };
        }),
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: scales,
        plugins: {
          legend: { display: def.metrics.length > 1, labels: { color: colors.text, boxWidth: 12 } },
          tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + PT.format(ctx.parsed.y, ctx.dataset.unit); } } },
          zoom: {
            zoom: {
              drag: { enabled: true, backgroundColor: "rgba(47,111,222,0.15)" },
              mode: "x",
              onZoomComplete: function (ctx) {
                if (handlers.onZoom) handlers.onZoom(Math.round(ctx.chart.scales.x.min), Math.round(ctx.chart.scales.x.max));
              },
            },
          },
        },
        onClick: function (event, elements, chart) {
          if (!handlers.onPick || !elements.length) return;
          const point = chart.data.datasets[elements[0].datasetIndex].data[elements[0].index];
          handlers.onPick(point.at !== undefined ? point.at : point.x);
        },
      },
    });
    chart.def = def;
    return chart;
  }

  // Put the API's series on a chart (by metric name). A point sits at the start of
  // its step and stands for the samples inside it: a click picks the step's last one.
  function fill(chart, series, from, to, step) {
    const byMetric = {}, span = (step || 0) * 1000;
    series.forEach(function (s) { byMetric[s.metric] = s.points; });
    chart.data.datasets.forEach(function (d) {
      d.data = (byMetric[d.metric] || []).map(function (p) { return { x: p[0], y: p[1], at: p[0] + Math.max(span - 1, 0) }; });
    });
    // Set the axis directly: the zoom plugin's resetZoom() would report a zoom of its
    // own, and the page would take it for the user's and load again, forever.
    chart.options.scales.x.min = from;
    chart.options.scales.x.max = to;
    chart.update("none");
  }

  // Live mode: add one point per dataset and keep the last `windowMs`.
  function append(chart, ms, valueOf, windowMs) {
    const oldest = ms - windowMs;
    chart.data.datasets.forEach(function (d) {
      const last = d.data.length ? d.data[d.data.length - 1].x : null;
      if (last !== null && ms <= last) return;
      d.data.push({ x: ms, y: valueOf(d.metric) });
      while (d.data.length && d.data[0].x < oldest) d.data.shift();
    });
    chart.options.scales.x.min = oldest;
    chart.options.scales.x.max = ms;
    chart.update("none");
  }

  async function fetchSeries(url, metrics, from, to, step) {
    const params = new URLSearchParams();
    metrics.forEach(function (m) { params.append("metric", m); });
    params.set("from", String(from / 1000));
    params.set("to", String(to / 1000));
    if (step) params.set("step", String(step));
    const response = await fetch(url + "?" + params.toString(), { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error("time series request failed: " + response.status);
    return response.json();
  }

  function recolor(charts) {
    const colors = themeColors();
    charts.forEach(function (chart) {
      Object.values(chart.options.scales).forEach(function (scale) {
        scale.ticks.color = colors.text; scale.grid.color = colors.grid;
      });
      chart.options.plugins.legend.labels.color = colors.text;
      chart.update("none");
    });
  }

  return { create, fill, append, fetchSeries, recolor };
})();
