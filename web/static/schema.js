// Starts Redoc (web/static/redoc.standalone.js) on /schema: no inline script, no CDN, no web fonts.
(function () {
  "use strict";
  // Redoc's sidebar credits Redocly with a logo it loads from Redocly's CDN. This page loads nothing from
  // outside (it must work with no internet, under a CSP that allows only this server): the logo's address
  // is replaced by an empty image before the browser can fetch it. The credit text stays.
  var blank = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==";
  function local(value) {
    var text = String(value);
    return /^https?:/i.test(text) && text.indexOf(location.origin + "/") !== 0 ? blank : value;
  }
  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    return setAttribute.call(this, name, this instanceof HTMLImageElement && String(name).toLowerCase() === "src" ? local(value) : value);
  };
  var src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get: function () { return src.get.call(this); },
    set: function (value) { src.set.call(this, local(value)); }
  });
  function start() {
    var root = document.getElementById("redoc");
    if (!root || !window.Redoc) {
      if (root) root.textContent = "The API reference viewer did not load; the raw description is at /schema/openapi.json.";
      return;
    }
    var system = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    window.Redoc.init(root.getAttribute("data-spec-url"), {
      nonce: root.getAttribute("data-nonce"),
      disableSearch: true,
      hideDownloadButton: false,
      expandResponses: "200,202",
      theme: {
        typography: { fontFamily: system, headings: { fontFamily: system }, code: { fontFamily: "ui-monospace, monospace" } },
        colors: { primary: { main: "#2457c5" } }
      }
    }, root);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
