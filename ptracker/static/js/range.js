"use strict";
// The time range of a page's charts: the preset buttons, the from/to boxes, drag-zoom
// and "Reset zoom", kept in the address (?range=24h, or ?from=…&to=… in ISO 8601) so a
// view can be shared and survives a reload. The host page and the process page use it.
PT.range = (function () {
  const PRESETS = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const OWN = ["range", "from", "to"];  // the address's parameters this helper owns

  function fromAddress(fallback, specials) {
    const params = new URLSearchParams(location.search);
    const key = params.get("range");
    if (key && (key in PRESETS || specials.indexOf(key) >= 0)) return { key: key };
    const from = Date.parse(params.get("from") || ""), to = Date.parse(params.get("to") || "");
    if (from < to) return { key: "custom", from: from, to: to };
    return { key: fallback };
  }

  function toAddress(state, fallback) {
    if (state.key === "custom" || state.key === "zoomed") {
      PT.setQuery({ range: null, from: new Date(state.from).toISOString(), to: new Date(state.to).toISOString() });
    } else {
      PT.setQuery({ range: state.key === fallback ? null : state.key, from: null, to: null });
    }
  }

  // picker: the page's .range-picker; fallback: what shows when the address names nothing
  // ("live" on a host, "life" on a process); specials: keys besides the presets, which
  // `show` resolves itself. show(state) draws {key, from?, to?} and returns the [from, to]
  // it drew, for the boxes.
  function create(picker, fallback, specials, show) {
    const form = picker.querySelector("form.custom-range");
    const reset = picker.querySelector("[data-reset-zoom]");
    const info = picker.querySelector(".range-info");
    let current = null, beforeZoom = null;

    function go(state) {
      if (state.key in PRESETS && state.from === undefined) {
        const now = Date.now();
        state = { key: state.key, from: now - PRESETS[state.key], to: now };
      }
      current = state;
      picker.querySelectorAll("[data-range]").forEach(function (b) {
        b.classList.toggle("active", b.dataset.range === state.key);
      });
      if (reset) reset.hidden = state.key !== "zoomed";
      toAddress(state, fallback);
      const shown = show(state);
      if (form && shown) {
        form.elements.from.value = PT.localInput(shown[0]);
        form.elements.to.value = PT.localInput(shown[1]);
      }
    }

    picker.querySelectorAll("[data-range]").forEach(function (button) {
      button.addEventListener("click", function () { beforeZoom = null; go({ key: button.dataset.range }); });
    });
    if (reset) {
      reset.addEventListener("click", function () {
        const back = beforeZoom || { key: fallback };
        beforeZoom = null;
        go(back.key in PRESETS ? { key: back.key } : back);  // a preset ends now again
      });
    }
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        const from = new Date(form.elements.from.value).getTime(), to = new Date(form.elements.to.value).getTime();
        if (!(from < to)) { if (info) info.textContent = "“from” must be before “to”"; return; }
        beforeZoom = null;
        go({ key: "custom", from: from, to: to });
      });
    }

    return {
      start: function () { go(fromAddress(fallback, specials)); },
      // A drag across a chart; "Reset zoom" goes back to what showed before the first one.
      zoom: function (from, to) {
        if (!beforeZoom) beforeZoom = current;
        go({ key: "zoomed", from: from, to: to });
      },
      select: function (key) { beforeZoom = null; go({ key: key }); },
      current: function () { return current; },
    };
  }

  return { create: create, OWN: OWN };
})();
