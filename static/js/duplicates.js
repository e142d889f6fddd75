// Duplicate review keys: Enter keeps the suggested image, 1-9 keep that image, n = not
// duplicates, s = skip to the next group.
(function () {
  "use strict";
  const group = document.getElementById("duplicate-group");
  if (!group) return;
  let busy = false;
  function submit(form) {
    if (busy || !form) return;
    busy = true;
    form.submit();
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    if (event.key === "Enter") {
      const suggested = group.querySelector("figure.suggested .keep-form");
      if (suggested) { event.preventDefault(); submit(suggested); }
    } else if (/^[1-9]$/.test(event.key)) {
      const figure = group.querySelector('figure[data-key="' + event.key + '"] .keep-form');
      if (figure) { event.preventDefault(); submit(figure); }
    } else if (event.key === "n") {
      event.preventDefault();
      submit(document.getElementById("dismiss-form"));
    } else if (event.key === "s") {
      const skip = document.getElementById("skip-link");
      if (skip) { event.preventDefault(); window.location.href = skip.href; }
    }
  });
})();
