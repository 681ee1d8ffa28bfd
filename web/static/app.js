// Event Router UI behaviour: small, no framework, no inline handlers (the CSP allows only this file and htmx).
"use strict";

// Copy buttons: <button data-copy="text"> or data-copy-from="#id".
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy], [data-copy-from]");
  if (!button) return;
  const from = button.getAttribute("data-copy-from");
  const text = from ? (document.querySelector(from)?.value ?? document.querySelector(from)?.textContent ?? "") : button.getAttribute("data-copy");
  const done = () => { const old = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = old; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => {});
  } else {
    const area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); done(); } finally { area.remove(); }
  }
});

// Confirmations: <form data-confirm="Really?"> or <button data-confirm="…">.
document.addEventListener("submit", (event) => {
  if (event.target.matches("[hx-post], [hx-put], [hx-delete], [hx-patch]")) return; // htmx:confirm asks instead
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
}, true);
document.addEventListener("htmx:confirm", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (!message) return;
  event.preventDefault();
  if (window.confirm(message)) event.detail.issueRequest(true);
});
