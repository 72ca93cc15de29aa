"use strict";
// Charts of `ptracker record` recordings (ptracker.report's JSON schema), read from
// <script type="application/json"> elements. Used inline by the standalone
// HTML report and as a static file by the hub's recording pages; needs Chart.js.
(function () {
  const COLORS = ["#2f6fed", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#f08c00"];
  const TOP = 5; // processes drawn besides the total

  function bytes(value) {
    if (value === null || value === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return (i ? value.toFixed(1) : value.toFixed(0)) + " " + units[i];
  }

  function card(container, title) {
    const div = document.createElement("div");
    div.className = "rec-card";
    const h3 = document.createElement("h3");
    h3.textContent = title;
    const box = document.createElement("div");
    box.className = "rec-chart";
    const canvas = document.createElement("canvas");
    box.appendChild(canvas);
    div.append(h3, box);
    container.appendChild(div);
    return canvas;
  }

  function draw(canvas, datasets, format) {
    datasets.forEach(function (d, i) {
      d.borderColor = d.borderColor || COLORS[i % COLORS.length];
      d.backgroundColor = d.borderColor;
      d.borderWidth = i === 0 ? 2 : 1.2;
      d.pointRadius = 0;
      d.spanGaps = false;
    });
    return new Chart(canvas, {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", title: { display: true, text: "seconds" } },
          y: { beginAtZero: true, ticks: { callback: format } },
        },
        plugins: {
          legend: { labels: { boxWidth: 10 } },
          tooltip: {
            callbacks: {
              label: function (item) { return item.dataset.label + ": " + format(item.parsed.y); },
            },
          },
        },
      },
    });
  }

  function series(samples, pick) {
    return samples.map(function (s) { return { x: s.t, y: pick(s) }; });
  }

  function render(container, rec) {
    const samples = rec.samples;
    const field = {};
    rec.fields.forEach(function (name, i) { field[name] = i; });
    function processLines(name, limit) {
      const ranked = rec.processes
        .filter(function (p) { return p[name] && p[name].max; })
        .sort(function (a, b) { return b[name].avg - a[name].avg; })
        .slice(0, limit);
      if (rec.processes.length < 2) return [];
      return ranked.map(function (p) {
        return {
          label: p.pid + " " + p.name,
          data: series(samples, function (s) {
            const values = s.processes[String(p.pid)];
            return values ? values[field[name]] : null;
          }),
        };
      });
    }
    function total(name, label) {
      return { label: label, data: series(samples, function (s) { return s.total[name]; }) };
    }
    const percent = function (v) { return v === null ? "" : Math.round(v * 10) / 10 + " %"; };
    const plain = function (v) { return v === null ? "" : String(v); };
    const charts = [];
    charts.push(draw(card(container, "CPU % (100 = one core)"),
      [total("cpu_percent", "all processes")].concat(processLines("cpu_percent", TOP)), percent));
    charts.push(draw(card(container, "Memory (RSS)"),
      [total("rss", "all processes")].concat(processLines("rss", TOP)), bytes));
    const gpuIndices = [];
    samples.forEach(function (s) {
      s.gpus.forEach(function (g) { if (gpuIndices.indexOf(g.index) < 0) gpuIndices.push(g.index); });
    });
    if (gpuIndices.length) {
      charts.push(draw(card(container, "GPU utilization %"), gpuIndices.map(function (index) {
        return {
          label: "GPU " + index,
          data: series(samples, function (s) {
            const g = s.gpus.find(function (x) { return x.index === index; });
            return g ? g.utilization : null;
          }),
        };
      }), percent));
      charts.push(draw(card(container, "GPU memory of these processes"),
        [total("gpu_memory", "all processes")].concat(processLines("gpu_memory", TOP)), bytes));
    }
    if (rec.options.io) {
      charts.push(draw(card(container, "Disk I/O"), [
        total("read_bps", "read"), total("write_bps", "write"),
      ], function (v) { return v === null ? "" : bytes(v) + "/s"; }));
    }
    charts.push(draw(card(container, "Processes and threads"), [
      total("processes", "processes"), total("threads", "threads"),
    ], plain));
    return charts;
  }

  // Each element with data-recording="ID" gets the charts of the JSON in the element
  // with that id (Django's json_script; the compare page has two).
  function start() {
    if (typeof Chart === "undefined") return;
    document.querySelectorAll("[data-recording]").forEach(function (container) {
      const element = document.getElementById(container.dataset.recording);
      if (!element) return;
      const charts = render(container, JSON.parse(element.textContent));
      container.dataset.charts = String(charts.length);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
