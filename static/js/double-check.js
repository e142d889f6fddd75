// Double-check page: one key per answer. The page is a plain form; keys press its buttons.
(function () {
  "use strict";
  const form = document.getElementById("dc-form");
  if (!form) return;
  const actionInput = document.getElementById("dc-action");
  const reasonInput = document.getElementById("dc-reason");
  const search = document.getElementById("dc-search");
  const subclassInput = document.getElementById("dc-subclass");
  const options = Array.from(document.querySelectorAll("#dc-subclasses option"));
  const trash = document.getElementById("dc-trash");
  let busy = false;

  function submit(action) {
    if (busy) return;
    const button = form.querySelector('button[data-action="' + action + '"]');
    if (button && button.disabled) return;
    busy = true;
    actionInput.value = action;
    // Buttons carry name="action" too; drop them so the hidden field decides.
    form.querySelectorAll('button[name="action"]').forEach(function (b) { b.removeAttribute("name"); });
    form.submit();
  }

  form.addEventListener("submit", function (event) {
    const button = event.submitter;
    if (button && button.dataset.action) {
      event.preventDefault();
      submit(button.dataset.action);
    }
  });

  function openTrash() {
    trash.hidden = false;
    const first = trash.querySelector("button");
    if (first) first.focus();
  }

  function closeTrash() {
    trash.hidden = true;
  }

  trash.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-reason]");
    if (button) {
      reasonInput.value = button.dataset.reason;
      submit("trash");
    } else if (event.target === trash) {
      closeTrash();
    }
  });

  form.querySelector('button[data-action="trash"]').addEventListener("click", openTrash);

  function chooseSearch() {
    const text = search.value.trim().toLowerCase();
    if (!text) return;
    const exact = options.find(function (o) { return o.value.toLowerCase() === text; });
    const match = exact || options.find(function (o) { return o.value.toLowerCase().indexOf(text) === 0; }) ||
      options.find(function (o) { return o.value.toLowerCase().indexOf(text) >= 0; });
    if (!match) {
      search.setCustomValidity("No class or sub-class matches.");
      search.reportValidity();
      return;
    }
    subclassInput.value = match.dataset.id;
    submit("relabel");
  }

  search.addEventListener("input", function () { search.setCustomValidity(""); });
  search.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      chooseSearch();
    } else if (event.key === "Escape") {
      search.value = "";
      search.blur();
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!trash.hidden) {
      if (event.key === "Escape") {
        closeTrash();
        return;
      }
      const button = trash.querySelector('button[data-key="' + event.key + '"]');
      if (button) {
        event.preventDefault();
        button.click();
      }
      return;
    }
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    const keys = { k: "keep", p: "predicted", s: "skip" };
    if (keys[event.key]) {
      event.preventDefault();
      submit(keys[event.key]);
    } else if (event.key === "x") {
      event.preventDefault();
      openTrash();
    } else if (event.key === "/") {
      event.preventDefault();
      search.focus();
    }
  });
})();
