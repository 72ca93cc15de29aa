"use strict";
// Host page: live and historical charts, live numbers, the process table of any moment.
document.addEventListener("DOMContentLoaded", function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const LIVE_WINDOW = 10 * 60e3;
  const info = document.getElementById("range-info");

  // Metric names only: each series brings its label and unit from the API.
  function metrics() { return Array.from(arguments).map(function (m) { return { metric: m }; }); }
  const defs = [
    { id: "cpu", title: "CPU", metrics: metrics("cpu_percent") },
    { id: "memory", title: "Memory and swap", metrics: metrics("mem_used", "swap_used") },
    { id: "load", title: "Load (1 min)", metrics: metrics("load1") },
    { id: "disk", title: "Disk I/O", metrics: metrics("disk_read_bps", "disk_write_bps") },
    { id: "network", title: "Network", metrics: metrics("net_rx_bps", "net_tx_bps") },
    { id: "tasks", title: "Processes and threads", metrics: [{ metric: "process_count" }, { metric: "thread_count", axis: "y1" }] },
    { id: "cores", title: "CPU per core", note: "(from raw samples: the last " + page.raw_hours + " h)",
      metrics: Array.from({ length: page.cores }, function (_, i) { return { metric: "cpu:" + i }; }) },
  ];
  page.gpus.forEach(function (i) {
    const g = "gpu:" + i + ":";
    defs.push({ id: "gpu" + i + "-util", title: "GPU " + i + " utilization", metrics: metrics(g + "utilization") });
    defs.push({ id: "gpu" + i + "-memory", title: "GPU " + i + " memory", metrics: metrics(g + "memory_used") });
    defs.push({ id: "gpu" + i + "-thermal", title: "GPU " + i + " temperature and power",
      metrics: [{ metric: g + "temperature" }, { metric: g + "power_w", axis: "y1" }] });
  });
  const allMetrics = [].concat.apply([], defs.map(function (d) { return d.metrics.map(function (m) { return m.metric; }); }));

  let mode = "live";
  const container = document.getElementById("charts");
  const handlers = {
    onZoom: function (from, to) { range.zoom(from, to); },
    onPick: function (ms) { loadTable({ at: String(ms) }); },
  };
  const charts = defs.map(function (def) { return PT.charts.create(container, def, handlers); });
  document.addEventListener("pt:theme", function () { PT.charts.recolor(charts); });

  // The download links follow the range on screen.
  function setDownloads(from, to) {
    document.querySelectorAll(".downloads a[data-export]").forEach(function (a) {
      a.href = a.dataset.export + "&from=" + Math.floor(from / 1000) + "&to=" + Math.ceil(to / 1000);
    });
  }

  async function load(from, to) {
    info.textContent = "loading…";
    setDownloads(from, to);
    try {
      const data = await PT.charts.fetchSeries(page.timeseries, allMetrics, from, to);
      charts.forEach(function (chart) { PT.charts.fill(chart, data.series, from, to, data.step); });
      info.textContent = "one point per " + PT.step(data.step) + (data.resolution >= 60 ? " (from " + (data.resolution === 60 ? "1-minute" : "1-hour") + " rollups)" : "");
    } catch (error) {
      info.textContent = String(error.message || error);
    }
  }

  const range = PT.range.create(document.querySelector(".range-picker"), "live", ["live"], function (state) {
    mode = state.key === "live" ? "live" : "range";
    if (mode === "range") { load(state.from, state.to); return [state.from, state.to]; }
    const now = Date.now();
    load(now - LIVE_WINDOW, now).then(function () { info.textContent = "live, last 10 minutes"; });
    return [now - LIVE_WINDOW, now];
  });

  // --- live numbers ---------------------------------------------------------------
  function updateNumbers(data) {
    const s = data.sample;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      el.textContent = PT.format(s[el.dataset.live], el.dataset.unit);
    });
    const ts = document.getElementById("sample-ts");
    if (ts) { ts.dateTime = s.ts; ts.textContent = PT.time(s.ts); }
    const up = document.getElementById("uptime");
    if (up) up.textContent = PT.duration(s.uptime);
    const bars = document.querySelectorAll("#cores .core i");
    (s.per_cpu || []).forEach(function (p, i) { if (bars[i]) bars[i].style.height = (p || 0).toFixed(0) + "%"; });
    document.getElementById("online-dot").className = "dot up";
  }

  function onSample(data) {
    const s = data.sample;
    if (!s) return;
    updateNumbers(data);
    if (mode !== "live") return;
    const ms = new Date(s.ts).getTime();
    const values = Object.assign({}, s);
    (data.gpus || []).forEach(function (g) {
      ["utilization", "memory_used", "temperature", "power_w"].forEach(function (f) { values["gpu:" + g.index + ":" + f] = g[f]; });
    });
    (s.per_cpu || []).forEach(function (p, i) { values["cpu:" + i] = p; });
    charts.forEach(function (chart) {
      PT.charts.append(chart, ms, function (metric) { return values[metric] === undefined ? null : values[metric]; }, LIVE_WINDOW);
    });
    refreshTable();
  }

  // --- the process table ----------------------------------------------------------
  const tableBox = document.getElementById("processes");
  const TABLE_KEYS = ["at", "sort", "q", "user", "pid", "view", "program", "page"];
  let tableParams = new URLSearchParams(location.search);
  PT.range.OWN.forEach(function (k) { tableParams.delete(k); });
  let tableBusy = false, tableLoaded = Date.now();
  const TABLE_EVERY = Math.max(5000, page.interval * 1000);  // the table need not redraw every tick

  async function loadTable(changes) {
    if (changes) {
      Object.keys(changes).forEach(function (k) {
        if (changes[k] === "" || changes[k] === null) tableParams.delete(k); else tableParams.set(k, changes[k]);
      });
    }
    tableBusy = true;
    tableLoaded = Date.now();
    try {
      const response = await fetch(page.processes + "?" + tableParams.toString());
      if (response.ok || response.status === 400) {  // a 400 is the table saying what is wrong
        tableBox.innerHTML = await response.text();
        PT.localTimes(tableBox);
        const changes = {};
        TABLE_KEYS.forEach(function (k) { changes[k] = tableParams.get(k); });
        PT.setQuery(changes);  // the range's parameters stay
      }
    } finally {
      tableBusy = false;
    }
  }

  function refreshTable() {
    // Follow the newest sample unless the table is pinned to a moment or a later page.
    if (tableBusy || tableParams.get("at") || (tableParams.get("page") || "1") !== "1") return;
    if (Date.now() - tableLoaded < TABLE_EVERY) return;
    loadTable();
  }

  tableBox.addEventListener("click", function (event) {
    const link = event.target.closest("a[data-sort], a[data-page], a[data-latest], a[data-table]");
    if (!link) return;
    event.preventDefault();
    tableParams = new URL(link.href).searchParams;
    loadTable();
  });
  tableBox.addEventListener("submit", function (event) {
    event.preventDefault();
    tableParams = new URLSearchParams(new FormData(event.target));
    tableParams.delete("page");
    loadTable();
  });

  PT.live(["host:" + page.host], function (message) {
    if (message.kind === "sample") onSample(message.data);
  }, function (state, reconnected) {
    PT.showState(state);
    if (state === "live" && reconnected && mode === "live") range.select("live");  // fill the gap from the API
  });
  range.start();

  // --- the summary: its rows grow with each sample; a minute's worth is enough ------
  const summaryBox = document.getElementById("summary");
  if (summaryBox) {
    setInterval(async function () {
      const response = await fetch(page.summary);
      if (response.ok) summaryBox.innerHTML = await response.text();
    }, 60e3);
  }
});
