// Library grids (class page, inbox, trash): pick images, then act on them together.
// A tile's box toggles it (once one is picked, a click anywhere on a tile does); Shift+click
// picks the range from the last tile clicked; "Select all on this page" (a) and Esc (clear).
// Each action opens a confirmation dialog that says what happens to how many images; the
// confirmed dialog posts the picked images ("<id>:<version seen>") with the form.
(function () {
  "use strict";
  var form = document.getElementById("grid-selection");
  if (!form) return;
  var tiles = Array.prototype.slice.call(form.querySelectorAll(".tile.pickable"));
  var boxes = tiles.map(function (tile) { return tile.querySelector("input.pick"); });
  var all = document.getElementById("select-page");
  var counter = document.getElementById("selected-count");
  var clear = document.getElementById("selection-clear");
  var bar = form.querySelector(".selection-bar");
  var page = form.dataset.page;
  var anchor = null; // index of the last tile clicked, where a Shift+click range starts

  function images(n) { return n + (n === 1 ? " image" : " images"); }

  function picked() {
    return tiles.filter(function (tile, i) { return boxes[i].checked; });
  }

  function refresh() {
    var n = picked().length;
    counter.textContent = n + " selected";
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
    all.disabled = boxes.length === 0;
    clear.hidden = n === 0;
    bar.classList.toggle("has-selection", n > 0);
    form.classList.toggle("picking", n > 0);
    tiles.forEach(function (tile, i) { tile.classList.toggle("picked", boxes[i].checked); });
    form.querySelectorAll("[data-needs-selection]").forEach(function (button) {
      button.disabled = n === 0;
    });
  }

  function setAll(checked) {
    boxes.forEach(function (box) { box.checked = checked; });
    anchor = null;
    refresh();
  }

  // Shift+click sets every tile between the anchor and this one to the clicked tile's state.
  function pick(index, shift, state) {
    if (shift && anchor !== null && anchor !== index) {
      var low = Math.min(anchor, index), high = Math.max(anchor, index);
      for (var i = low; i <= high; i++) boxes[i].checked = state;
    } else {
      boxes[index].checked = state;
    }
    anchor = index;
    refresh();
  }

  tiles.forEach(function (tile, index) {
    var box = boxes[index];
    box.addEventListener("click", function (event) {
      // The browser has already flipped the box: that is the state the range takes.
      event.stopPropagation();
      pick(index, event.shiftKey, box.checked);
    });
    tile.addEventListener("click", function (event) {
      if (event.target === box) return;
      // Ctrl/Cmd/middle clicks keep opening the image in a new tab.
      if (event.ctrlKey || event.metaKey || event.altKey || event.button !== 0) return;
      if (!event.shiftKey && picked().length === 0) return; // a plain click opens the image
      event.preventDefault();
      pick(index, event.shiftKey, !box.checked);
    });
  });
  all.addEventListener("change", function () { setAll(all.checked); });
  clear.addEventListener("click", function () { setAll(false); });

  // --- Confirmation dialogs ------------------------------------------------------------------

  function countBy(list, key) {
    var counts = {};
    list.forEach(function (tile) {
      var value = tile.dataset[key] || "";
      counts[value] = (counts[value] || 0) + 1;
    });
    return counts;
  }

  var where = { "class": "this class", inbox: "the inbox" }[page] || "the library";

  var summaries = {
    label: function (dialog, list) {
      var select = dialog.querySelector("select");
      if (!select.value) return { text: "Choose where the " + images(list.length) + " go." };
      var target = select.options[select.selectedIndex].text;
      var there = list.filter(function (tile) { return tile.dataset.subclass === select.value; }).length;
      var moving = list.length - there;
      var text = moving ? images(moving) + " move to " + target + "." : "";
      if (there) text += " " + images(there) + (there === 1 ? " is" : " are") + " already there and stay as " + (there === 1 ? "it is." : "they are.");
      return { text: text.trim(), count: moving };
    },
    trash: function (dialog, list) {
      return images(list.length) + " leave " + where + " and go to the trash.";
    },
    restore: function (dialog, list) {
      var counts = countBy(list, "label");
      var parts = Object.keys(counts).sort().map(function (label) {
        return counts[label] + " to " + label;
      });
      return images(list.length) + " go back where they were: " + parts.join(", ") + ".";
    },
    benchmark: function (dialog, list) {
      var select = dialog.querySelector("select[data-new-toggle]");
      var option = select.options[select.selectedIndex];
      if (!select.value) {
        var name = dialog.querySelector('input[name="new_name"]').value.trim();
        return images(list.length) + " start " + (name ? "the new set “" + name + "”" : "a new set") + " (version 1).";
      }
      var version = Number(option.dataset.version);
      var members = Number(option.dataset.members);
      var text = images(list.length) + " join “" + select.value + "” as its version " + (version + 1) +
        " (version " + version + " has " + images(members) + "; any already in it are skipped).";
      var unlabelled = list.filter(function (tile) { return !tile.dataset.subclass; }).length;
      if (unlabelled && option.dataset.kind !== "out_of_scope") {
        text += " " + images(unlabelled) + " without a class will be left out.";
      }
      return text;
    },
    queue: function (dialog, list) {
      return images(list.length) + " become a labelling queue of their own.";
    }
  };

  function summarise(dialog) {
    var list = picked();
    dialog.querySelectorAll("[data-count-text]").forEach(function (span) {
      span.textContent = images(list.length);
    });
    var toggle = dialog.querySelector("[data-new-toggle]");
    if (toggle) {
      var fields = dialog.querySelector("[data-new-fields]");
      fields.hidden = toggle.value !== "";
      fields.querySelectorAll("input, select").forEach(function (input) { input.disabled = fields.hidden; });
    }
    var summary = dialog.querySelector("[data-summary]");
    var kind = dialog.dataset.kind;
    if (!summary || !summaries[kind]) return;
    var said = summaries[kind](dialog, list);
    if (typeof said === "string") said = { text: said };
    summary.textContent = said.text;
    // The confirm button names the images the action will change (none: nothing to confirm).
    var confirm = dialog.querySelector("[data-confirm]");
    if (said.count !== undefined) {
      confirm.querySelectorAll("[data-count-text]").forEach(function (span) {
        span.textContent = images(said.count);
      });
    }
    confirm.disabled = said.count === 0;
  }

  function open(id) {
    var dialog = document.getElementById(id);
    var trigger = form.querySelector('[data-open="' + id + '"]');
    if (!dialog || !trigger || trigger.disabled) return;
    summarise(dialog);
    dialog.showModal();
    var first = dialog.querySelector("select, input:not([disabled])");
    if (first) first.focus();
  }

  form.querySelectorAll("[data-open]").forEach(function (button) {
    button.addEventListener("click", function () { open(button.dataset.open); });
  });
  form.querySelectorAll("dialog").forEach(function (dialog) {
    dialog.querySelectorAll("select, input").forEach(function (input) {
      input.addEventListener("input", function () { summarise(dialog); });
      input.addEventListener("change", function () { summarise(dialog); });
    });
    dialog.querySelectorAll("[data-close]").forEach(function (button) {
      button.addEventListener("click", function () { dialog.close(); });
    });
    // Enter in a field confirms this dialog, never another action of the form.
    dialog.querySelectorAll("input").forEach(function (input) {
      input.addEventListener("keydown", function (event) {
        if (event.key !== "Enter") return;
        event.preventDefault();
        dialog.querySelector("[data-confirm]").click();
      });
    });
  });

  // The dialogs live inside the form, so the picked boxes travel with the confirmed action;
  // the other dialogs' fields stay out of the request.
  form.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var dialog = button.closest("dialog");
      var missing = Array.prototype.slice.call(dialog.querySelectorAll("[data-required]")).filter(
        function (input) { return !input.disabled && !input.value.trim(); }
      );
      if (missing.length) {
        event.preventDefault();
        missing[0].classList.add("invalid");
        missing[0].focus();
        return;
      }
      form.querySelectorAll("dialog").forEach(function (other) {
        if (other === dialog) return;
        other.querySelectorAll("select, input").forEach(function (input) { input.disabled = true; });
      });
      // One request per confirmation, however often the button is pressed.
      window.setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return; // Esc there closes the dialog
    var tag = (event.target.tagName || "").toLowerCase();
    var typing = tag === "textarea" || tag === "select" ||
      (tag === "input" && event.target.type !== "checkbox");
    if (typing) return;
    if (event.key === "Escape" && picked().length) {
      event.preventDefault();
      setAll(false);
    } else if (event.key === "a" && boxes.length) {
      event.preventDefault();
      setAll(picked().length !== boxes.length);
    }
  });

  // Back/forward may restore ticked boxes from the browser's cache: show what is ticked.
  window.addEventListener("pageshow", refresh);
  refresh();
})();
