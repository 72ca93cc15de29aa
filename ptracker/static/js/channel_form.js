"use strict";
// Admin channel form: show only the settings the chosen kind reads.
document.addEventListener("DOMContentLoaded", function () {
  const kind = document.getElementById("id_kind");
  if (!kind) return;
  function show() {
    document.querySelectorAll("fieldset.channel-settings").forEach(function (fieldset) {
      fieldset.style.display = fieldset.classList.contains("for-" + kind.value) ? "" : "none";
    });
  }
  kind.addEventListener("change", show);
  show();
});
