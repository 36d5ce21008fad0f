// 营销 · 活动: the form's live audience count and character count, placeholder buttons,
// Alt+N for 新建活动, the call list's print button. Every figure comes from the server
// (the lists' count from /api/marketing/lists, a saved segment's from /api/marketing/count
// when picked; stored runs carry theirs).
(function () {
  "use strict";

  document.addEventListener("keydown", function (ev) {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
    var link = document.querySelector('[data-shortcut="' + ev.key.toLowerCase() + '"]');
    if (link) { ev.preventDefault(); link.click(); }
  });

  var print = document.querySelector("[data-print]");
  if (print) { print.addEventListener("click", function () { window.print(); }); }

  // the list: each launched campaign's figures from its JSON twin
  function pct(x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%"; }
  document.querySelectorAll("#campaigns td[data-json]").forEach(function (cell) {
    var row = cell.closest("tr");
    hyFetch(cell.getAttribute("data-json")).then(function (body) {
      var r = body.results;
      cell.textContent = r.treated + " / " + r.control;
      row.querySelector(".r-sends").textContent = r.sent + " / " + r.delivered;
      row.querySelector(".r-back").textContent =
        r.came_back.treated_all + " (" + pct(r.came_back_rate.treated_all) + ") / " +
        r.came_back.control + " (" + pct(r.came_back_rate.control) + ")";
    }).catch(function (err) { cell.textContent = "—"; cell.title = err.message; });
  });

  var form = document.getElementById("campaign-form");
  if (!form) { return; }
  var countEl = document.getElementById("audience-count");
  var asked = 0;
  var timer = null;

  function picked(name) {
    var box = form.querySelector('input[name="' + name + '"]:checked');
    return box ? box.value : "";
  }
  function optionCount(id) {
    var select = document.getElementById(id);
    var option = select.options[select.selectedIndex];
    return option ? option.getAttribute("data-count") : "";
  }
  function show(n) { countEl.textContent = n === "" || n === null ? "—" : Number(n).toLocaleString("zh-CN"); }

  function recount() {
    var kind = picked("audience_kind");
    var mine = ++asked;
    if (kind === "segment") { countSegment(mine); return; }
    if (kind === "run") { show(optionCount("run")); return; }
    if (kind !== "list") { show(""); return; }
    var params = new URLSearchParams({
      kind: document.getElementById("list-kind").value,
      month: document.getElementById("list-month").value,
      limit: "1"
    });
    var week = document.getElementById("list-week").value;
    if (week) { params.set("week", week); }
    countEl.textContent = "…";
    hyFetch(form.getAttribute("data-count-url") + "?" + params.toString())
      .then(function (body) { if (mine === asked) { show(body.count); } })
      .catch(function (err) { if (mine === asked) { countEl.textContent = "— " + err.message; } });
  }
  // a saved segment: counted now, over today's members (the page does not count them all)
  function countSegment(mine) {
    var select = document.getElementById("segment");
    var option = select.options[select.selectedIndex];
    var conditions = option ? option.getAttribute("data-conditions") : null;
    if (!conditions) { show(""); return; }
    countEl.textContent = "…";
    hyFetch(select.getAttribute("data-count-url"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ conditions: JSON.parse(conditions) })
    })
      .then(function (body) { if (mine === asked) { show(body.count); } })
      .catch(function (err) { if (mine === asked) { countEl.textContent = "— " + err.message; } });
  }
  function soon() { window.clearTimeout(timer); timer = window.setTimeout(recount, 200); }
  document.getElementById("audience").addEventListener("change", soon);
  document.getElementById("audience").addEventListener("input", soon);
  // choosing a value picks its option: the radio beside it
  form.querySelectorAll(".cp-option select, .cp-option input:not([type=radio])").forEach(function (field) {
    field.addEventListener("change", function () {
      var radio = field.closest(".cp-option").querySelector("input[type=radio]");
      if (radio && !radio.checked) { radio.checked = true; soon(); }
    });
  });
  recount();

  var text = document.getElementById("text");
  var oneSms = parseInt(text.getAttribute("data-sms"), 10);
  var part = parseInt(text.getAttribute("data-part"), 10);
  function meter() {
    var n = Array.from(text.value).length;
    document.getElementById("char-count").textContent = n;
    document.getElementById("sms-parts").textContent = n === 0 ? 0 : (n <= oneSms ? 1 : Math.ceil(n / part));
    text.closest("section").querySelector(".cp-meter").classList.toggle("over", n > oneSms);
  }
  text.addEventListener("input", meter);
  meter();

  form.querySelectorAll("[data-insert]").forEach(function (button) {
    button.addEventListener("click", function () {
      var token = button.getAttribute("data-insert");
      var start = text.selectionStart, end = text.selectionEnd;
      text.value = text.value.slice(0, start) + token + text.value.slice(end);
      text.focus();
      text.selectionStart = text.selectionEnd = start + token.length;
      meter();
    });
  });
})();
