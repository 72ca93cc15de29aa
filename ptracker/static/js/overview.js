"use strict";
// Fleet overview: every card follows its host's samples as they arrive.
document.addEventListener("DOMContentLoaded", function () {
  function set(card, field, text) {
    const el = card.querySelector('[data-field="' + field + '"]');
    if (el) el.textContent = text;
  }
  function bar(card, name, percent) {
    const el = card.querySelector('[data-bar="' + name + '"]');
    if (el && percent !== null && percent !== undefined) el.style.width = Math.min(100, percent).toFixed(0) + "%";
  }

  function update(data) {
    const card = document.querySelector('.host-card[data-host="' + data.host.id + '"]');
    const s = data.sample;
    if (!card || !s) return;
    if (!card.querySelector('[data-field="cpu"]')) { location.reload(); return; }  // first sample of a new host
    set(card, "cpu", PT.format(s.cpu_percent, "%")); bar(card, "cpu", s.cpu_percent);
    set(card, "mem", PT.format(s.mem_percent, "%")); bar(card, "mem", s.mem_percent);
    const fullest = (s.disks || []).reduce(function (a, d) { return !a || d.percent > a.percent ? d : a; }, null);
    if (fullest) { set(card, "disk", PT.format(fullest.percent, "%")); bar(card, "disk", fullest.percent); }
    (data.gpus || []).forEach(function (g) {
      set(card, "gpu" + g.index, PT.format(g.utilization, "%") + " · " + PT.format(g.memory_percent, "%") + " mem");
      bar(card, "gpu" + g.index, g.utilization);
    });
    set(card, "load", [s.load1, s.load5, s.load15].map(function (v) { return PT.format(v, ""); }).join(" "));
    set(card, "uptime", PT.duration(s.uptime));
    const ts = card.querySelector('[data-field="ts"]');
    if (ts) { ts.dateTime = s.ts; ts.textContent = PT.relative(new Date(s.ts)); }
    const dot = card.querySelector('[data-field="online"]');
    if (dot) dot.className = "dot up";
  }

  // A host that stops reporting turns offline without a reload.
  setInterval(function () {
    document.querySelectorAll(".host-card").forEach(function (card) {
      const ts = card.querySelector('[data-field="ts"]'), dot = card.querySelector('[data-field="online"]');
      if (!ts || !dot) return;
      const limit = Math.max(3 * Number(card.dataset.interval || 5), 15) * 1000;
      dot.className = "dot " + (Date.now() - new Date(ts.dateTime).getTime() <= limit ? "up" : "down");
    });
  }, 5000);

  PT.live(["fleet"], function (message) { if (message.kind === "host") update(message.data); }, PT.showState);
});
