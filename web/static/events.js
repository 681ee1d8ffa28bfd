// Event pages (overview, events, dead letters): small behaviour the CSP allows only from a file.
"use strict";

(() => {
  // A refreshed section (the runs of an event poll while they run) keeps the <details> that were open.
  let open = [];
  document.addEventListener("htmx:beforeSwap", () => {
    open = Array.from(document.querySelectorAll("details[open][id]"), (d) => d.id);
  });
  document.addEventListener("htmx:afterSettle", () => {
    for (const id of open) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    }
  });

  // <input type="checkbox" data-select-all="run" form="x">: ticks every box named "run" of form x.
  document.addEventListener("change", (event) => {
    const all = event.target.closest("[data-select-all]");
    if (!all) return;
    const name = all.getAttribute("data-select-all");
    const form = all.getAttribute("form");
    for (const box of document.querySelectorAll("input[type=checkbox]")) {
      if (box.name === name && (!form || box.getAttribute("form") === form)) box.checked = all.checked;
    }
  });

  // A button whose request fails (403: role or CSRF, 404...) says why, where its answer would have gone.
  document.addEventListener("htmx:responseError", (event) => {
    const detail = event.detail;
    if (!detail.requestConfig || detail.requestConfig.verb === "get") return; // polling retries by itself
    let text = `The request failed (HTTP ${detail.xhr.status}).`;
    const page = new DOMParser().parseFromString(detail.xhr.responseText || "", "text/html");
    const reason = page.querySelector("[data-testid=error-detail]");
    if (reason && reason.textContent.trim()) text = `${text} ${reason.textContent.trim()}`;
    const box = document.createElement("div");
    box.className = "notice error";
    box.setAttribute("role", "alert");
    box.setAttribute("data-testid", "request-error");
    box.textContent = text;
    const target = detail.target;
    if (target && target.id !== "failing-destinations") {
      target.replaceChildren(box);
    } else if (target) {
      target.prepend(box);
    }
  });
})();
