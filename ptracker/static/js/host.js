"use strict";
// Host page: live and historical charts, live numbers, the process table of any moment.
document.addEventListener("DOMContentLoaded", function () {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const LIVE_WINDOW = 10 * 60e3;
  const info = document.getElementById("range-info");

  const defs = [
    { id: "cpu", title: "CPU", metrics: [{ metric: "cpu_percent", label: "CPU", unit: "%" }] },
    { id: "memory", title: "Memory and swap", metrics: [
      { metric: "mem_used", label: "memory used", unit: "bytes" }, { metric: "swap_used", label: "swap used", unit: "bytes" }] },
    { id: "load", title: "Load (1 min)", metrics: [{ metric: "load1", label: "load", unit: "" }] },
    { id: "disk", title: "Disk I/O", metrics: [
      { metric: "disk_read_bps", label: "read", unit: "bytes/s" }, { metric: "disk_write_bps", label: "write", unit: "bytes/s" }] },
    { id: "network", title: "Network", metrics: [
      { metric: "net_rx_bps", label: "in", unit: "bytes/s" }, { metric: "net_tx_bps", label: "out", unit: "bytes/s" }] },
  ];
  page.gpus.forEach(function (i) {
    const g = "gpu:" + i + ":";
    defs.push({ id: "gpu" + i + "-util", title: "GPU " + i + " utilization", metrics: [{ metric: g + "utilization", label: "utilization", unit: "%" }] });
    defs.push({ id: "gpu" + i + "-memory", title: "GPU " + i + " memory", metrics: [{ metric: g + "memory_used", label: "memory used", unit: "bytes" }] });
    defs.push({ id: "gpu" + i + "-thermal", title: "GPU " + i + " temperature and power", metrics: [
      { metric: g + "temperature", label: "temperature", unit: "°C" }, { metric: g + "power_w", label: "power", unit: "W", axis: "y1" }] });
  });
  const allMetrics = [].concat.apply([], defs.map(function (d) { return d.metrics.map(function (m) { return m.metric; }); }));

  let mode = "live", range = null;
  const container = document.getElementById("charts");
  const handlers = {
    onZoom: function (from, to) { showRange(from, to, "zoomed"); },
    onPick: function (ms) { loadTable({ at: String(ms) }); },
  };
  const charts = defs.map(function (def) { return PT.charts.create(container, def, handlers); });
  const cores = PT.charts.create(container, {
    id: "cores", title: "CPU per core (live only)",
    metrics: Array.from({ length: page.cores }, function (_, i) { return { metric: "core" + i, label: "CPU " + i, unit: "%" }; }),
  }, {});
  document.addEventListener("pt:theme", function () { PT.charts.recolor(charts.concat([cores])); });

  function setActive(key) {
    document.querySelectorAll(".range-picker [data-range]").forEach(function (b) {
      b.classList.toggle("active", b.dataset.range === key);
    });
  }

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

  function startLive() {
    mode = "live"; range = null; setActive("live");
    document.getElementById("chart-cores").hidden = false;
    const now = Date.now();
    PT.charts.fill(cores, [], now - LIVE_WINDOW, now);  // the live window, empty until samples come
    load(now - LIVE_WINDOW, now).then(function () { info.textContent = "live, last 10 minutes"; });
  }

  function showRange(from, to, key) {
    mode = "range"; range = [from, to]; setActive(key);
    document.getElementById("chart-cores").hidden = true;
    load(from, to);
  }

  document.querySelectorAll(".range-picker [data-range]").forEach(function (button) {
    button.addEventListener("click", function () {
      const key = button.dataset.range;
      if (key === "live") return startLive();
      const now = Date.now();
      showRange(now - RANGES[key], now, key);
    });
  });
  document.getElementById("custom-range").addEventListener("submit", function (event) {
    event.preventDefault();
    const form = event.target;
    const from = new Date(form.elements.from.value).getTime(), to = new Date(form.elements.to.value).getTime();
    if (!(from < to)) { info.textContent = "“from” must be before “to”"; return; }
    showRange(from, to, "custom");
  });

  // --- live numbers ---------------------------------------------------------------
  function updateNumbers(data) {
    const s = data.sample;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      el.textContent = PT.format(s[el.dataset.live], el.dataset.unit);
    });
    const ts = document.getElementById("sample-ts");
    if (ts) { ts.dateTime = s.ts; ts.textContent = new Date(s.ts).toLocaleString(); }
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
    (s.per_cpu || []).forEach(function (p, i) { values["core" + i] = p; });
    charts.concat([cores]).forEach(function (chart) {
      PT.charts.append(chart, ms, function (metric) { return values[metric] === undefined ? null : values[metric]; }, LIVE_WINDOW);
    });
    refreshTable();
  }

  // --- the process table ----------------------------------------------------------
  const tableBox = document.getElementById("processes");
  let tableParams = new URLSearchParams(location.search);
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
        history.replaceState(null, "", "?" + tableParams.toString());
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
    const link = event.target.closest("a[data-sort], a[data-page], a[data-latest]");
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
    if (state === "live" && reconnected && mode === "live") startLive();  // fill the gap from the API
  });
  startLive();
});
