// 概览 and 报表: Enter on a filter's drop-down submits its form, as Enter in a text field
// does (browsers do not submit a form from a <select> by themselves).
(function () {
  "use strict";
  document.addEventListener("keydown", function (ev) {
    var field = ev.target;
    if (ev.key !== "Enter" || ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) { return; }
    if (!field || field.tagName !== "SELECT" || !field.form) { return; }
    if (!field.form.classList.contains("filters")) { return; }
    ev.preventDefault();
    field.form.requestSubmit();
  });
})();
