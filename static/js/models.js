// Models page: confirmations before activating or creating classes, and a busy state while
// an upload is validated (a dry run of a large model takes a few seconds).
(function () {
  "use strict";
  document.querySelectorAll(".activate-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var message = "Activate " + form.dataset.version + "? It will suggest labels from now on, " +
        "and suggestions for the whole library are recomputed as a job.";
      if (!window.confirm(message)) event.preventDefault();
    });
  });
  document.querySelectorAll(".create-classes").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm("Create " + form.dataset.count + " new classes from these label names?")) {
        event.preventDefault();
      }
    });
  });
  var upload = document.getElementById("model-upload");
  if (upload) {
    upload.addEventListener("submit", function () {
      var button = upload.querySelector("button[type=submit]");
      button.disabled = true;
      document.getElementById("upload-status").textContent = "Validating the model…";
    });
  }
})();
