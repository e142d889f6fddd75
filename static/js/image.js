// Image page: l relabel, t trash (or restore), ← / → previous / next image.
// Typing in the filter box narrows the sub-class list; Enter picks the first match.
(function () {
  "use strict";
  var select = document.getElementById("relabel-subclass");
  var filter = document.getElementById("relabel-filter");

  function isTyping(target) {
    var tag = (target.tagName || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var groups = select.querySelectorAll("optgroup");
    for (var g = 0; g < groups.length; g++) {
      var group = groups[g];
      var groupMatches = group.label.toLowerCase().indexOf(needle) !== -1;
      var anyVisible = false;
      var options = group.querySelectorAll("option");
      for (var o = 0; o < options.length; o++) {
        var show = !needle || groupMatches || options[o].text.toLowerCase().indexOf(needle) !== -1;
        options[o].hidden = !show;
        anyVisible = anyVisible || show;
      }
      group.hidden = !anyVisible;
    }
  }

  function firstVisibleOption() {
    var options = select.querySelectorAll("optgroup:not([hidden]) option:not([hidden])");
    return options.length ? options[0] : null;
  }

  if (select && filter) {
    filter.addEventListener("input", applyFilter);
    filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === "ArrowDown") {
        event.preventDefault();
        var first = firstVisibleOption();
        if (first) first.selected = true;
        select.focus();
      } else if (event.key === "Escape") {
        filter.value = "";
        applyFilter();
      }
    });
    select.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        select.form.requestSubmit();
      }
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && isTyping(event.target)) {
      event.target.blur();
      return;
    }
    if (isTyping(event.target)) return;
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    var target = null;
    if (key === "l" && filter) {
      target = filter;
    } else if (key === "t") {
      target = document.getElementById("trash-reason") || document.getElementById("restore-button");
    } else if (event.key === "ArrowLeft") {
      target = document.getElementById("previous-image");
      if (target) window.location.href = target.href;
      target = null;
    } else if (event.key === "ArrowRight") {
      target = document.getElementById("next-image");
      if (target) window.location.href = target.href;
      target = null;
    } else {
      return;
    }
    event.preventDefault();
    if (target) target.focus();
  });
})();
