// The rule builder: pick fields from the sample tree, insert template variables, and note which
// filter editor (the condition rows or the advanced box) was used last. Everything else is htmx.
"use strict";
(() => {
  let lastField = null; // the condition path input or template field the user was last in

  document.addEventListener("focusin", (event) => {
    const el = event.target;
    if (el.matches && el.matches("input.cond-path, [data-template]")) lastField = el;
  });

  // The server reads the filter from whichever editor was used last (hidden input filter_last).
  const mark = (event) => {
    const el = event.target;
    const last = document.getElementById("filter-last");
    if (!last || !el.closest) return;
    if (el.id === "advanced") last.value = "advanced";
    else if (el.closest("#condition-rows")) last.value = "rows";
  };
  for (const type of ["input", "change", "click"]) document.addEventListener(type, mark, true);

  const changed = (field) => {
    field.dispatchEvent(new Event("input", { bubbles: true }));
    field.dispatchEvent(new Event("change", { bubbles: true }));
  };

  const insertAt = (field, text) => {
    const start = typeof field.selectionStart === "number" ? field.selectionStart : field.value.length;
    const end = typeof field.selectionEnd === "number" ? field.selectionEnd : start;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    try { field.setSelectionRange(start + text.length, start + text.length); } catch (_) { /* not a text field */ }
    changed(field);
  };

  const live = (el) => (el && document.contains(el) ? el : null);

  // A click on a sample field: its path into a condition, or {{ variable }} into a template field.
  document.addEventListener("click", (event) => {
    const pick = event.target.closest ? event.target.closest("[data-path]") : null;
    if (!pick) return;
    let target = live(lastField);
    if (!target) {
      const paths = document.querySelectorAll("input.cond-path");
      target = paths.length ? paths[paths.length - 1] : null;
    }
    if (!target) return;
    if (target.matches("[data-template]")) {
      insertAt(target, "{{ " + pick.getAttribute("data-var") + " }}");
    } else {
      target.value = pick.getAttribute("data-path");
      target.focus();
      changed(target);
    }
  });

  // A step's variable picker inserts into the field of that step the user was last in (else its first).
  document.addEventListener("change", (event) => {
    const picker = event.target.closest ? event.target.closest("select.var-picker") : null;
    if (!picker || !picker.value) return;
    const step = picker.getAttribute("data-step");
    const last = live(lastField);
    const target = last && last.getAttribute("data-template") === step
      ? last
      : document.querySelector('[data-template="' + step + '"]');
    const value = picker.value;
    picker.value = "";
    if (target) insertAt(target, value);
  });
})();
