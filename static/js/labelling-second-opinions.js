// Second-opinion review: one disagreement at a time, settled with one key.
// 1 keeps the first label, 2 takes the second opinion, D sends the image to Double-check,
// J/K (or the arrow keys) move through the open list. The page works without this script:
// every choice is a form button and every list entry a link.
(function () {
  "use strict";

  const root = document.getElementById("so");
  if (!root) return;
  const list = document.getElementById("so-list");
  const counter = document.getElementById("so-open-count");
  const toasts = document.getElementById("so-toasts");
  const empty = document.getElementById("so-empty");
  let busy = false;

  function items() {
    return Array.from(root.querySelectorAll(".so-item"));
  }

  function current() {
    return items().find((item) => !item.hidden) || null;
  }

  function show(item) {
    if (!item) return;
    for (const other of items()) other.hidden = other !== item;
    const id = item.dataset.opinion;
    for (const link of list.querySelectorAll("a[data-opinion]")) {
      if (link.dataset.opinion === id) {
        link.setAttribute("aria-current", "true");
        link.scrollIntoView({ block: "nearest" });
      } else {
        link.removeAttribute("aria-current");
      }
    }
    // Load the next image now so it is there when this one is settled.
    const all = items();
    const next = all[all.indexOf(item) + 1];
    const image = next && next.querySelector(".so-viewer img");
    if (image) image.loading = "eager";
    const url = new URL(window.location.href);
    url.searchParams.set("opinion", id);
    window.history.replaceState(null, "", url);
  }

  function move(step) {
    const all = items();
    const index = all.indexOf(current());
    const target = all[index + step];
    if (target) show(target);
  }

  function toast(message, isError) {
    const node = document.createElement("div");
    node.className = isError ? "toast toast-error" : "toast";
    node.textContent = message;
    toasts.appendChild(node);
    setTimeout(() => node.remove(), isError ? 6000 : 2500);
  }

  function setOpen(count) {
    counter.textContent = Number(count).toLocaleString();
    counter.dataset.open = String(count);
  }

  function remove(item) {
    const all = items();
    const index = all.indexOf(item);
    const following = all[index + 1] || all[index - 1] || null;
    const link = list.querySelector(`a[data-opinion="${item.dataset.opinion}"]`);
    if (link) link.closest("li").remove();
    item.remove();
    if (following) {
      show(following);
    } else {
      root.hidden = true;
      empty.hidden = false;
    }
  }

  async function settle(item, choice) {
    if (busy || !item) return;
    const form = item.querySelector("form");
    const button = form.querySelector(`button[value="${choice}"]`);
    if (!button) return;
    busy = true;
    button.classList.add("so-pressed");
    const body = new FormData(form);
    body.set("choice", choice);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: body,
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const data = await response.json().catch(() => ({}));
      if (typeof data.open === "number") setOpen(data.open);
      if (response.ok) {
        toast(data.message || "Settled.", false);
        remove(item);
      } else if (response.status === 409) {
        // Settled by someone else meanwhile (or the image changed): it leaves the list.
        toast(data.message || "Already settled.", true);
        remove(item);
      } else {
        toast(data.message || `Could not settle (${response.status}).`, true);
      }
    } catch (error) {
      toast("Could not reach the server; nothing was settled.", true);
    } finally {
      button.classList.remove("so-pressed");
      busy = false;
    }
  }

  const CHOICES = { 1: "first", 2: "second", d: "double_check" };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key in CHOICES) {
      event.preventDefault();
      settle(current(), CHOICES[key]);
    } else if (key === "j" || key === "ArrowDown" || key === "ArrowRight") {
      event.preventDefault();
      move(1);
    } else if (key === "k" || key === "ArrowUp" || key === "ArrowLeft") {
      event.preventDefault();
      move(-1);
    }
  });

  root.addEventListener("submit", (event) => {
    const item = event.target.closest(".so-item");
    const button = event.submitter;
    if (!item || !button || !button.value) return;
    event.preventDefault();
    settle(item, button.value);
  });

  list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-opinion]");
    if (!link) return;
    const item = document.getElementById(`opinion-${link.dataset.opinion}`);
    if (!item) return;
    event.preventDefault();
    show(item);
  });

  show(current());
})();
