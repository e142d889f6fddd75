// Image grids (class, inbox, trash): → next page, ← back; filters apply as they change.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    if (event.key === "ArrowRight") {
      var next = document.querySelector('[data-key="next"]');
      if (next) {
        event.preventDefault();
        window.location.href = next.href;
      }
    } else if (event.key === "ArrowLeft") {
      if (document.querySelector('[data-key="first"]')) {
        event.preventDefault();
        window.history.back();
      }
    }
  });
})();
