// Jobsite's monitoring pages: live regions and confirmations. No build step.
//
// An element with an id and data-refresh-url is replaced every
// data-refresh-seconds by what that URL returns: the same partial template the
// page was rendered with. The server leaves data-refresh-url out once there is
// nothing left to follow (a finished run), which stops the polling.
(function () {
  "use strict";

  function schedule(element) {
    var seconds = Number(element.dataset.refreshSeconds) || 3;
    window.setTimeout(function () { refresh(element.id); }, seconds * 1000);
  }

  function refresh(id) {
    var element = document.getElementById(id);
    if (!element || !element.dataset.refreshUrl) return;
    if (document.hidden) { schedule(element); return; }
    fetch(element.dataset.refreshUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.redirected) { window.location.reload(); return null; }  // logged out
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        element.outerHTML = html;
        var fresh = document.getElementById(id);
        if (fresh && fresh.dataset.refreshUrl) schedule(fresh);
      })
      .catch(function (error) {
        element.classList.add("stale");
        element.title = "Could not refresh (" + error.message + "); retrying";
        schedule(element);
      });
  }

  document.querySelectorAll("[data-refresh-url][id]").forEach(schedule);

  // <form data-confirm="Really?">: ask before posting.
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
