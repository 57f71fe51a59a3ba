// Added by Jobsite's /flower/ proxy to Flower's pages: Flower's buttons post
// with jQuery, and through the proxy those posts must carry Django's CSRF token.
(function () {
  var cookieName = (document.currentScript && document.currentScript.dataset.cookie) || "csrftoken";
  function token() {
    var match = document.cookie.match(new RegExp("(?:^|;\\s*)" + cookieName + "=([^;]+)"));
    return match ? decodeURIComponent(match[1]) : "";
  }
  if (!window.jQuery) return;
  window.jQuery(document).ajaxSend(function (event, xhr, options) {
    if (!/^(GET|HEAD|OPTIONS)$/i.test(options.type)) xhr.setRequestHeader("X-CSRFToken", token());
  });
})();
