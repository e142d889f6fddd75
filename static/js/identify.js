// Identify page: tick images (a = whole page), then label (l), trash (t) or queue (q), each
// behind a confirmation dialog; → / ← page through the results; filters apply as they change.
(function () {
  "use strict";
  var form = document.getElementById("bulk-form");
  if (!form) return;
  var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="image"]'));
  var all = document.getElementById("select-page");
  var counter = document.getElementById("selected-count");

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });

  function selected() {
    return boxes.filter(function (box) { return box.checked; }).length;
  }

  function refresh() {
    var n = selected();
    counter.textContent = n + " selected";
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
    form.querySelectorAll("[data-needs-selection]").forEach(function (button) {
      button.disabled = n === 0;
    });
    form.querySelectorAll("[data-count]").forEach(function (span) {
      span.textContent = n;
    });
  }

  boxes.forEach(function (box) { box.addEventListener("change", refresh); });
  all.addEventListener("change", function () {
    boxes.forEach(function (box) { box.checked = all.checked; });
    refresh();
  });

  function open(id) {
    var dialog = document.getElementById(id);
    if (!dialog) return;
    var trigger = form.querySelector('[data-open="' + id + '"]');
    if (trigger && trigger.disabled) return;
    dialog.showModal();
    var first = dialog.querySelector("select, input");
    if (first) first.focus();
  }

  form.querySelectorAll("[data-open]").forEach(function (button) {
    button.addEventListener("click", function () { open(button.dataset.open); });
  });
  form.querySelectorAll("dialog [data-close]").forEach(function (button) {
    button.addEventListener("click", function () { button.closest("dialog").close(); });
  });

  // The dialogs live inside the form, so the ticked boxes travel with the confirmed action;
  // the inputs of the other dialogs are left out of the request.
  form.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var dialog = button.closest("dialog");
      var kind = button.dataset.confirm;
      if (kind === "label" && !dialog.querySelector("select").value) {
        event.preventDefault();
        dialog.querySelector("select").focus();
        return;
      }
      if (kind === "trash" && !dialog.querySelector("input").value.trim()) {
        event.preventDefault();
        var note = dialog.querySelector("input");
        note.placeholder = "Say why these images go to the trash";
        note.focus();
        return;
      }
      form.querySelectorAll("dialog").forEach(function (other) {
        if (other === dialog) return;
        other.querySelectorAll("select, input").forEach(function (input) { input.disabled = true; });
      });
      if (kind === "queue") {
        boxes.forEach(function (box) { box.disabled = true; });
      }
    });
  });

  // Enter in a dialog's field confirms that dialog, never another action of the form.
  form.querySelectorAll("dialog input").forEach(function (input) {
    input.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      event.preventDefault();
      input.closest("dialog").querySelector("[data-confirm]").click();
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;
    var tag = (event.target.tagName || "").toLowerCase();
    var typing = tag === "textarea" || tag === "select" ||
      (tag === "input" && event.target.type !== "checkbox");
    if (typing) return;
    var key = event.key;
    if (key === "a" && boxes.length) {
      event.preventDefault();
      all.checked = !(selected() === boxes.length);
      boxes.forEach(function (box) { box.checked = all.checked; });
      refresh();
    } else if (key === "l") {
      event.preventDefault();
      open("label-dialog");
    } else if (key === "t") {
      event.preventDefault();
      open("trash-dialog");
    } else if (key === "q") {
      event.preventDefault();
      open("queue-dialog");
    } else if (key === "ArrowRight") {
      var next = document.querySelector('[data-key="next"]');
      if (next) { event.preventDefault(); window.location.href = next.href; }
    } else if (key === "ArrowLeft") {
      if (document.querySelector('[data-key="first"]')) {
        event.preventDefault();
        window.history.back();
      }
    }
  });

  refresh();
})();
