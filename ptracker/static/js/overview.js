"use strict";
// Fleet overview. The server draws every card and table row (monitoring/fleet.html);
// this script asks for that partial again when hosts report, at most every EVERY ms
// however many report, and keeps the nodes of hosts whose markup did not change. The
// controls change the address (so a view can be shared) and redraw without a reload.
document.addEventListener("DOMContentLoaded", function () {
  const EVERY = 2000;
  const TYPING = 300;  // ms of quiet in the search box before it applies
  const form = document.getElementById("fleet-controls");
  let box = document.getElementById("fleet");
  let drawn = remember(box);  // host id -> {html, node}: what each item was drawn from
  let timer = null, offlineTimer = null, wanted = false, busy = false, last = 0, asked = 0;

  function remember(root) {
    const items = new Map();
    root.querySelectorAll("[data-host]").forEach(function (node) {
      items.set(node.dataset.host, { html: node.outerHTML, node: node });
    });
    return items;
  }

  // The form's values, less those at their defaults: a short address to share.
  function query() {
    const params = new URLSearchParams();
    Array.from(form.elements).forEach(function (field) {
      if (field.name && field.value.trim() !== (field.dataset.default || "")) params.set(field.name, field.value.trim());
    });
    return params.toString();
  }

  function swap(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const next = template.content.getElementById("fleet");
    if (!next) return;  // not the partial (a login page after the session ended)
    const items = new Map();
    next.querySelectorAll("[data-host]").forEach(function (node) {
      const key = node.dataset.host, markup = node.outerHTML, old = drawn.get(key);
      if (old && old.html === markup) {
        node.replaceWith(old.node);
        items.set(key, old);
      } else {
        PT.localTimes(node);
        items.set(key, { html: markup, node: node });
      }
    });
    box.replaceWith(next);  // one change to the page, so one layout
    box = next;
    drawn = items;
    followOffline();
  }

  // The server says when the first shown host turns offline if it stays silent.
  function followOffline() {
    clearTimeout(offlineTimer);
    const seconds = parseFloat(box.dataset.refreshIn);
    if (!Number.isNaN(seconds)) offlineTimer = setTimeout(soon, seconds * 1000 + 500);
  }

  async function load() {
    const ask = ++asked, params = query();
    busy = true; wanted = false; last = Date.now();
    try {
      const response = await fetch(form.dataset.partial + (params ? "?" + params : ""));
      // A 400 is the partial saying which parameter is wrong; a newer request wins.
      if ((response.ok || response.status === 400) && ask === asked) swap(await response.text());
    } catch (error) {
      // Offline: the live state shows it, and the reconnect asks again.
    } finally {
      busy = false;
      if (wanted) soon();
    }
  }

  // Redraw within EVERY ms: a burst of reports costs one request.
  function soon() {
    wanted = true;
    if (busy || timer || document.hidden) return;
    timer = setTimeout(function () { timer = null; load(); }, Math.max(0, last + EVERY - Date.now()));
  }

  // The controls apply at once (after a pause in typing), whatever the rate limit.
  function apply(delay) {
    const params = query();
    history.replaceState(null, "", location.pathname + (params ? "?" + params : ""));
    clearTimeout(timer);
    timer = setTimeout(function () { timer = null; load(); }, delay);
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); apply(0); });
  form.addEventListener("input", function (event) { apply(event.target.name === "q" ? TYPING : 0); });
  document.addEventListener("click", function (event) {
    const link = event.target.closest("#fleet a[data-sort]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    form.elements.sort.value = link.dataset.sort;
    apply(0);
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden && wanted) soon(); });

  followOffline();
  PT.live(["fleet"], function (message) {
    if (message.kind === "host") soon();
  }, function (state, reconnected) {
    PT.showState(state);
    if (state === "live" && reconnected) soon();  // what changed while the socket was down
  });
});
