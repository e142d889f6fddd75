// Production review: one verdict key per log; the form posts and the next log loads.
(function () {
  "use strict";
  const form = document.getElementById("review-form");
  if (!form) return;
  const verdict = document.getElementById("verdict");
  const subclass = document.getElementById("subclass");
  const badReason = document.getElementById("bad-reason");
  const classInput = document.getElementById("class-input");
  const subjectBox = document.getElementById("subject-box");
  const subject = document.getElementById("subject");
  const overlay = document.getElementById("bad-overlay");
  const classes = JSON.parse(document.getElementById("review-classes").textContent);
  const reasons = JSON.parse(document.getElementById("review-reasons").textContent);
  const sad = !!form.querySelector('[data-verdict="should_be_confident"]');
  let sent = false;

  function submit(value) {
    if (sent) return;
    sent = true;
    verdict.value = value;
    form.submit();
  }

  function classId(name) {
    const wanted = name.trim().toLowerCase();
    const exact = classes.find((c) => c.name.toLowerCase() === wanted);
    if (exact) return exact.id;
    // A fragment that names exactly one class is enough ("robin" for "European robin").
    const partial = classes.filter((c) => wanted && c.name.toLowerCase().includes(wanted));
    return partial.length === 1 ? partial[0].id : null;
  }

  function openBad() {
    overlay.hidden = false;
    overlay.querySelector("button").focus();
  }

  function openSubject() {
    subjectBox.hidden = false;
    subject.focus();
  }

  form.querySelectorAll("[data-verdict]").forEach((button) => {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      const value = button.dataset.verdict;
      if (value === "bad_picture") openBad();
      else if (value === "out_of_scope") openSubject();
      else submit(value);
    });
  });

  overlay.querySelectorAll("[data-reason]").forEach((button) => {
    button.addEventListener("click", () => {
      badReason.value = button.dataset.reason;
      submit("bad_picture");
    });
  });

  classInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      const id = classId(classInput.value);
      if (id === null) {
        classInput.setCustomValidity("Choose a class from the list.");
        classInput.reportValidity();
        return;
      }
      subclass.value = id;
      submit("wrong");
    } else if (event.key === "Escape") {
      classInput.blur();
    }
  });
  classInput.addEventListener("input", () => classInput.setCustomValidity(""));

  subject.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      submit("out_of_scope");
    } else if (event.key === "Escape") {
      subjectBox.hidden = true;
      subject.blur();
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (!overlay.hidden) {
      if (event.key === "Escape") {
        overlay.hidden = true;
        return;
      }
      const reason = reasons.find((r) => r.key === event.key);
      if (reason) {
        event.preventDefault();
        badReason.value = reason.value;
        submit("bad_picture");
      }
      return;
    }
    const target = event.target;
    if (target instanceof HTMLInputElement && target.type !== "hidden") return;
    if (event.key === "c") submit("correct");
    else if (event.key === "f" && sad) submit("should_be_confident");
    else if (event.key === "b") openBad();
    else if (event.key === "o") {
      event.preventDefault();
      openSubject();
    } else if (event.key === "/") {
      event.preventDefault();
      classInput.focus();
    }
  });
})();
