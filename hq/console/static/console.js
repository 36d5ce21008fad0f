// 慧员总部后台: the one script. Sends the CSRF token with every fetch that changes
// something, gives the sidebar its Alt+key shortcuts, asks before [data-confirm] forms.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : "";

  window.hyFetch = function (url, options) {
    options = options || {};
    options.headers = Object.assign({ "X-CSRF-Token": csrf, "Accept": "application/json" },
      options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (resp) {
      return resp.json().then(function (body) {
        if (!resp.ok) { throw new Error(body.message || ("请求失败 " + resp.status)); }
        return body;
      });
    });
  };

  document.addEventListener("keydown", function (ev) {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
    // a letter key arrives as typed ("l" for Alt+L): the sidebar names it in capitals
    var key = ev.key.length === 1 ? ev.key.toUpperCase() : ev.key;
    var link = document.querySelector('.side a[data-key="' + key + '"]');
    if (link) { ev.preventDefault(); link.click(); }
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });

  // buttons that reveal a masked value: <button data-reveal="/api/..." data-target="id">
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest("[data-reveal]");
    if (!button) { return; }
    ev.preventDefault();
    hyFetch(button.getAttribute("data-reveal"), { method: "POST" }).then(function (body) {
      var target = document.getElementById(button.getAttribute("data-target"));
      target.textContent = body.value;
      button.hidden = true;
    }).catch(function (err) { window.alert(err.message); });
  });
})();
