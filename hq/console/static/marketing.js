// 营销 · 分群: builds the conditions from the form, asks the live count on every change,
// saves a segment. Every figure comes from /api/marketing (the page never counts).
(function () {
  "use strict";
  var builder = document.getElementById("builder");
  if (!builder) { return; }
  var countEl = document.getElementById("live-count");
  var problemEl = document.getElementById("count-problem");
  var timer = null;
  var asked = 0;

  function checked(box, selector) {
    return Array.prototype.map.call(box.querySelectorAll(selector + ":checked"), function (i) { return i.value; });
  }
  function words(text) {
    return text.split(/[,，\s]+/).map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function conditions() {
    var out = [];
    builder.querySelectorAll("fieldset[data-kind]").forEach(function (box) {
      var kind = box.getAttribute("data-kind");
      var cond = { kind: kind };
      var months = box.querySelector(".months");
      if (months && months.value) { cond.months = parseInt(months.value, 10); }
      if (kind === "rfm") {
        box.querySelectorAll(".mk-rfm").forEach(function (row) {
          var picked = checked(row, "input[type=checkbox]").map(function (v) { return parseInt(v, 10); });
          if (picked.length) { cond[row.getAttribute("data-key")] = picked; }
        });
        if (cond.r || cond.f || cond.m) { out.push(cond); }
        return;
      }
      var values;
      if (kind === "store") {
        values = Array.prototype.map.call(box.querySelector(".values").selectedOptions, function (o) { return o.value; });
        cond.by = box.querySelector(".by").value;
      } else if (box.querySelector(".text")) {
        values = words(box.querySelector(".text").value);
      } else {
        values = checked(box, "input[type=checkbox]");
      }
      if (kind === "birthday_month") { values = values.map(function (v) { return parseInt(v, 10); }); }
      if (values.length) { cond.values = values; out.push(cond); }
    });
    return out;
  }

  function recount() {
    var mine = ++asked;
    problemEl.textContent = "";
    countEl.textContent = "…";
    hyFetch(builder.getAttribute("data-count-url"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ conditions: conditions() })
    }).then(function (body) {
      if (mine === asked) { countEl.textContent = body.count.toLocaleString("zh-CN"); }
    }).catch(function (err) {
      if (mine === asked) { countEl.textContent = "—"; problemEl.textContent = err.message; }
    });
  }
  function soon() { window.clearTimeout(timer); timer = window.setTimeout(recount, 250); }

  builder.addEventListener("change", soon);
  builder.addEventListener("input", soon);
  recount();

  var form = document.getElementById("save-form");
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = document.getElementById("segment-name").value;
      hyFetch(builder.getAttribute("data-save-url"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: name, conditions: conditions() })
      }).then(function () { window.location.reload(); })
        .catch(function (err) { problemEl.textContent = err.message; });
    });
  }
})();
