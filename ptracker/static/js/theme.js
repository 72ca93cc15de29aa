"use strict";
// Loaded without defer in <head>: the saved theme applies before the first paint.
(function () {
  const theme = localStorage.getItem("ptracker-theme");
  if (theme) document.documentElement.dataset.theme = theme;
})();
