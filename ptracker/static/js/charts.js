"use strict";
// Line charts of time series from /api/v1/hosts/<id>/timeseries, with drag-to-zoom.
// Labels and units come with the API's series (fill); a page names only metrics.
PT.charts = (function () {
  if (window.ChartZoom) Chart.register(window.ChartZoom);
  const COLORS = ["#2f6fde", "#e0731b", "#1f9d55", "#c0392b", "#8e44ad", "#16a2b8", "#b8860b", "#d63384"];
  const TICKS = 5;  // at most this many steps up an axis: a chart is 190 px high
  const BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function themeColors() {
    const style = getComputedStyle(document.documentElement);
    return { text: style.getPropertyValue("--muted").trim(), grid: style.getPropertyValue("--line").trim() };
  }

  function unitOf(scale) {
    const dataset = scale.chart.data.datasets.find(function (d) { return (d.yAxisID || "y") === scale.id; });
    return dataset ? dataset.unit : undefined;
  }

  // Bytes go up in powers of two (256 MiB, 512 MiB, 768 MiB…), counts in whole 1-2-5
  // steps; other units keep Chart.js's ticks. An empty axis still shows one step.
  function roundStep(top, unit) {
    const target = Math.max(top, 0) / TICKS;
    if (unit === "bytes" || unit === "bytes/s") return Math.pow(2, Math.max(0, Math.ceil(Math.log2(target || 1))));
    if (unit !== "count") return null;
    const power = Math.pow(10, Math.max(0, Math.floor(Math.log10(target || 1))));
    return [1, 2, 5, 10].map(function (f) { return f * power; }).find(function (s) { return s >= target; });
  }

  function roundTicks(scale) {
    const unit = unitOf(scale), high = scale.ptDataMax, step = roundStep(high, unit);
    if (!step) return;
    const top = Math.max(step, Math.ceil(high / step) * step);
    scale.min = 0;
    scale.max = top;
    scale.ticks = [];
    for (let v = 0; v <= top; v += step) scale.ticks.push({ value: v });
    // One unit per axis: the largest that the top reaches, unless steps would read 0.25.
    let power = 0;
    while (power < BINARY.length - 1 && Math.pow(1024, power + 1) <= top) power++;
    if (power > 0 && step / Math.pow(1024, power) < 0.5) power--;
    scale.ptPower = power;
  }

  function tickLabel(scale, value) {
    const unit = unitOf(scale);
    if ((unit === "bytes" || unit === "bytes/s") && scale.ptPower !== undefined) {
      const scaled = Number((value / Math.pow(1024, scale.ptPower)).toFixed(3));
      return scaled + " " + BINARY[scale.ptPower] + (unit === "bytes/s" ? "/s" : "");
    }
    return PT.format(value, unit);
  }

  // def: {id, title, note?, metrics: [{metric, axis?}]}; handlers: onZoom(from, to), onPick(ms)
  function create(container, def, handlers) {
    const figure = document.createElement("figure");
    figure.className = "chart";
    figure.id = "chart-" + def.id;
    figure.innerHTML = "<figcaption></figcaption><div class='canvas-box'><canvas></canvas></div>";
    figure.querySelector("figcaption").textContent = def.title;
    if (def.note) {
      const note = document.createElement("span");
      note.className = "hint small";
      note.textContent = " " + def.note;
      figure.querySelector("figcaption").appendChild(note);
    }
    container.appendChild(figure);
    const colors = themeColors();
    const scales = {
      x: { type: "time", grid: { color: colors.grid },
        ticks: { color: colors.text, maxRotation: 0, autoSkipPadding: 16,
          callback: function (value) { return PT.axisTime(value, this.max - this.min); } } },
    };
    const axes = Array.from(new Set(def.metrics.map(function (m) { return m.axis || "y"; })));
    axes.forEach(function (axis, i) {
      scales[axis] = {
        position: i === 0 ? "left" : "right",
        beginAtZero: true,
        afterDataLimits: function (scale) {
          if (unitOf(scale) === "%") scale.max = Math.max(scale.max, 100);
          scale.ptDataMax = scale.max;  // before Chart.js rounds it up its own (decimal) way
        },
        afterBuildTicks: roundTicks,
        ticks: { color: colors.text, callback: function (value) { return tickLabel(this, value); } },
        grid: { color: colors.grid, drawOnChartArea: i === 0 },
      };
    });
    const chart = new Chart(figure.querySelector("canvas"), {
      type: "line",
      data: {
        datasets: def.metrics.map(function (m, i) {
          return {
            label: m.metric, data: [], yAxisID: m.axis || "y", borderColor: COLORS[i % COLORS.length],
            backgroundColor: COLORS[i % COLORS.length], borderWidth: 1.5, pointRadius: 0, pointHitRadius: 6,
            tension: 0.15, spanGaps: false, parsing: false, metric: m.metric, unit: undefined,
          };
        }),
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: scales,
        plugins: {
          // Past eight lines (a core each) a legend would fill the box; the tooltip names them.
          legend: { display: def.metrics.length > 1 && def.metrics.length <= 8, labels: { color: colors.text, boxWidth: 12 } },
          tooltip: { callbacks: {
            title: function (items) { return items.length ? PT.time(items[0].parsed.x) : ""; },
            label: function (ctx) { return ctx.dataset.label + ": " + PT.format(ctx.parsed.y, ctx.dataset.unit); },
          } },
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

  // Put the API's series on a chart (by metric name), with their labels and units.
  // A point sits at the start of its step and stands for the samples inside it: a
  // click picks the step's last one.
  function fill(chart, series, from, to, step) {
    const byMetric = {}, span = (step || 0) * 1000;
    series.forEach(function (s) { byMetric[s.metric] = s; });
    chart.data.datasets.forEach(function (d) {
      const s = byMetric[d.metric];
      if (!s) { d.data = []; return; }
      d.label = s.label;
      d.unit = s.unit;
      d.data = s.points.map(function (p) { return { x: p[0], y: p[1], at: p[0] + Math.max(span - 1, 0) }; });
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
