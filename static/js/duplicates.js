// Duplicate review keys: Enter keeps the suggested image, 1-9 keep that image, n = not
// duplicates, s = skip to the next group. In a group whose members disagree on the label,
// choosing the keeper (Enter, 1-9 or its button) does not resolve: it asks which label the
// keeper takes (1-9 one of the labels shown, 0 its own), and Esc goes back.
(function () {
  "use strict";
  const group = document.getElementById("duplicate-group");
  if (!group) return;
  const form = document.getElementById("resolve-form");
  const conflict = document.getElementById("label-conflict");
  const question = document.getElementById("label-question");
  const askedBefore = question ? question.textContent : "";
  let busy = false;
  let pending = null; // the keeper's button while the label question is open

  function submitForm(target) {
    if (busy || !target) return;
    busy = true;
    target.submit();
  }

  function keepWith(button) {
    if (busy || !button || !form) return;
    busy = true;
    form.requestSubmit(button);
  }

  function chosenLabel() {
    return conflict ? conflict.querySelector('input[name="label"]:checked') : null;
  }

  function ask(button) {
    pending = button;
    const figure = button.closest("figure");
    group.querySelectorAll("figure.chosen").forEach(function (f) { f.classList.remove("chosen"); });
    figure.classList.add("chosen");
    const own = conflict.querySelector(".own-label");
    if (own) own.textContent = "(" + figure.dataset.label + ")";
    const count = Math.min(conflict.querySelectorAll(".label-option").length - 1, 9);
    const keys = count > 1 ? "1–" + count + ", or 0 for its own" : count === 1 ? "1, or 0 for its own" : "0 for its own";
    question.textContent =
      "Keeping image " + figure.dataset.image + ": which label does it take? Press " + keys +
      "; Esc to go back.";
    conflict.classList.add("asking");
    conflict.scrollIntoView({ block: "nearest" });
  }

  function back() {
    pending = null;
    group.querySelectorAll("figure.chosen").forEach(function (f) { f.classList.remove("chosen"); });
    if (conflict) conflict.classList.remove("asking");
    if (question) question.textContent = askedBefore;
  }

  // Keep a chosen image: at once in a group that agrees, or once a label is chosen.
  function keep(button) {
    if (!button) return;
    if (conflict && !chosenLabel()) { ask(button); return; }
    keepWith(button);
  }

  if (form) {
    form.addEventListener("click", function (event) {
      const button = event.target.closest(".keep-button");
      if (!button) return;
      event.preventDefault();
      keep(button);
    });
  }
  if (conflict) {
    conflict.addEventListener("change", function () {
      if (pending && chosenLabel()) keepWith(pending);
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable)) {
      if (!(target.type === "radio" && target.name === "label")) return;
    }
    if (pending) {
      if (event.key === "Escape") { event.preventDefault(); back(); return; }
      if (/^[0-9]$/.test(event.key)) {
        const option = conflict.querySelector('.label-option[data-option="' + event.key + '"] input');
        if (option) {
          event.preventDefault();
          option.checked = true;
          keepWith(pending);
        }
      }
      return;
    }
    if (event.key === "Enter") {
      const suggested = group.querySelector("figure.suggested .keep-button");
      if (suggested) { event.preventDefault(); keep(suggested); }
    } else if (/^[1-9]$/.test(event.key)) {
      const button = group.querySelector('figure[data-key="' + event.key + '"] .keep-button');
      if (button) { event.preventDefault(); keep(button); }
    } else if (event.key === "n") {
      event.preventDefault();
      submitForm(document.getElementById("dismiss-form"));
    } else if (event.key === "s") {
      const skip = document.getElementById("skip-link");
      if (skip) { event.preventDefault(); window.location.href = skip.href; }
    }
  });
})();
