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
  const relabel = document.getElementById("relabel");
  const confirmBox = document.getElementById("relabel-confirm");
  const libraryButton = form.querySelector('[data-verdict="library"]');
  let sent = false;
  // A verdict that agrees with the model on an image the library labels otherwise relabels the
  // image: the first key press asks, the second (the same key) confirms.
  let confirming = null;

  function submit(value) {
    if (sent) return;
    sent = true;
    verdict.value = value;
    form.submit();
  }

  function agree(value) {
    const button = form.querySelector('[data-verdict="' + value + '"]');
    if (!button || !button.dataset.confirm) {
      submit(value);
      return;
    }
    if (confirming === value) {
      relabel.value = "1";
      submit(value);
      return;
    }
    confirming = value;
    document.getElementById("relabel-key").textContent = value === "correct" ? "c" : "f";
    confirmBox.hidden = false;
  }

  function cancelConfirm() {
    confirming = null;
    confirmBox.hidden = true;
  }

  function libraryIsRight() {
    // The library's label is the right class: the model was wrong.
    subclass.value = libraryButton.dataset.subclass;
    submit("wrong");
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
    cancelConfirm();
    overlay.hidden = false;
    overlay.querySelector("button").focus();
  }

  function openSubject() {
    cancelConfirm();
    subjectBox.hidden = false;
    subject.focus();
  }

  form.querySelectorAll("[data-verdict]").forEach((button) => {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      const value = button.dataset.verdict;
      if (value === "bad_picture") openBad();
      else if (value === "out_of_scope") openSubject();
      else if (value === "library") libraryIsRight();
      else if (value === "correct" || value === "should_be_confident") agree(value);
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
    if (confirming && event.key === "Escape") {
      cancelConfirm();
      return;
    }
    if (event.key === "c") agree("correct");
    else if (event.key === "f" && sad) agree("should_be_confident");
    else if (event.key === "l" && libraryButton) libraryIsRight();
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
