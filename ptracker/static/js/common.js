"use strict";
// Shared by every page: units, local times, the theme toggle and the live socket.
window.PT = (function () {
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function bytes(value) {
    let v = Math.abs(value), i = 0;
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return (value < 0 ? "-" : "") + (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + UNITS[i];
  }

  function format(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    switch (unit) {
      case "%": return value.toFixed(1) + " %";
      case "bytes": return bytes(value);
      case "bytes/s": return bytes(value) + "/s";
      case "count": return String(Math.round(value));
      case "°C": return value.toFixed(0) + " °C";
      case "W": return value.toFixed(0) + " W";
      default: return Number.isInteger(value) ? String(value) : value.toFixed(2);
    }
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600),
      m = Math.floor(seconds % 3600 / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    return m ? m + " min" : Math.floor(seconds) + " s";
  }

  // A chart step in seconds, as a reader says it: "30 s", "1.5 min", "2 h".
  function step(seconds) {
    function round(v) { return String(Math.round(v * 10) / 10); }
    if (seconds >= 3600) return round(seconds / 3600) + " h";
    if (seconds >= 60) return round(seconds / 60) + " min";
    return round(seconds) + " s";
  }

  // One way to write a moment on every page: the browser's locale and time zone.
  // Chart axes drop the parts their span makes obvious (the date within one day).
  const FULL = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const DAY_MINUTE = new Intl.DateTimeFormat(undefined, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  const MINUTE = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const SECOND = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  function time(value) { return FULL.format(new Date(value)); }

  function axisTime(value, spanMs) {
    const format = spanMs > 86400e3 ? DAY_MINUTE : spanMs > 600e3 ? MINUTE : SECOND;
    return format.format(new Date(value));
  }

  // The value of a datetime-local box for a moment: local wall time, to the second.
  function localInput(ms) {
    const d = new Date(ms), pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  // Change some query parameters of the page's address without a reload or a history
  // entry; null or "" removes one. The others (a table's sort, say) stay.
  function setQuery(changes) {
    const params = new URLSearchParams(location.search);
    Object.keys(changes).forEach(function (k) {
      if (changes[k] === null || changes[k] === undefined || changes[k] === "") params.delete(k);
      else params.set(k, changes[k]);
    });
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }

  function relative(date) {
    const s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 5) return "just now";
    if (s < 90) return s + " seconds ago";
    if (s < 5400) return Math.round(s / 60) + " minutes ago";
    if (s < 129600) return Math.round(s / 3600) + " hours ago";
    return Math.round(s / 86400) + " days ago";
  }

  // Server pages write UTC; show every time in the browser's time zone.
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      const date = new Date(t.dateTime);
      if (Number.isNaN(date.getTime())) return;
      t.title = time(date) + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")";
      t.textContent = t.hasAttribute("data-relative") ? relative(date) : time(date);
    });
  }

  // Forms with local date-times tell the server the browser's offset from UTC.
  function tagTimeZone(root) {
    (root || document).querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("input[type=datetime-local]") || form.querySelector("input[name=tz]")) return;
      const tz = document.createElement("input");
      tz.type = "hidden"; tz.name = "tz"; tz.value = String(new Date().getTimezoneOffset());
      form.appendChild(tz);
    });
  }

  function setupTheme() {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.addEventListener("click", function () {
      const dark = document.documentElement.dataset.theme
        ? document.documentElement.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      const next = dark ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("ptracker-theme", next);
      document.dispatchEvent(new CustomEvent("pt:theme"));
    });
  }

  // A websocket to /ws/live/ that subscribes to `topics`, reconnects by itself with
  // backoff after a server restart, and tells onState("live", reconnected) / ("offline").
  function live(topics, onMessage, onState) {
    let retry = 0, opened = false;
    function connect() {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/");
      ws.onopen = function () {
        topics.forEach(function (t) { ws.send(JSON.stringify({ subscribe: t })); });
        const reconnected = opened;
        opened = true; retry = 0;
        if (onState) onState("live", reconnected);
      };
      ws.onmessage = function (event) { onMessage(JSON.parse(event.data)); };
      ws.onclose = function () {
        if (onState) onState("offline", false);
        setTimeout(connect, Math.min(15000, 500 * Math.pow(2, retry++)));
      };
    }
    connect();
  }

  function showState(state) {
    const el = document.getElementById("live-state");
    if (!el) return;
    el.textContent = state === "live" ? "● live" : "○ reconnecting…";
    el.className = "live-state " + state;
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    tagTimeZone(document);
    setupTheme();
    setInterval(function () {
      document.querySelectorAll("time[data-relative]").forEach(function (t) {
        t.textContent = relative(new Date(t.dateTime));
      });
    }, 5000);
  });

  return { bytes, format, duration, step, time, axisTime, localInput, setQuery, relative, localTimes,
    tagTimeZone, live, showState };
})();
