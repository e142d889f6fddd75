// Models page: confirmations before activating or creating classes, a busy state while an
// upload is sent, and the uploads the worker is validating: their rows follow the job every
// two seconds, and the page reloads when one ends, to list the new version or the reason.
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
      document.getElementById("upload-status").textContent = "Uploading the model…";
    });
  }

  var table = document.getElementById("model-uploads");
  if (!table || !table.dataset.live) return;
  var api = table.dataset.api;
  var INTERVAL = 2000;

  function waiting() {
    return Array.prototype.filter.call(table.querySelectorAll("tr[data-job]"), function (row) {
      return row.dataset.status === "queued" || row.dataset.status === "running";
    });
  }

  function update(row, job) {
    var bar = row.querySelector(".progress");
    if (bar) {
      bar.className = "progress " + job.status;
      bar.setAttribute("aria-valuenow", String(job.percent));
      bar.firstElementChild.style.width = job.percent + "%";
    }
    row.querySelector('[data-field="message"]').textContent = job.message || "";
    return job.status === "succeeded" || job.status === "failed";
  }

  function refresh() {
    var rows = waiting();
    if (!rows.length) return;
    Promise.all(
      rows.map(function (row) {
        return fetch(api + encodeURIComponent(row.dataset.job) + "/", {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        })
          .then(function (response) {
            return response.ok ? response.json() : null;
          })
          .then(function (job) {
            return job ? update(row, job) : false;
          })
          .catch(function () {
            return false;
          });
      })
    ).then(function (finished) {
      if (finished.some(Boolean)) window.location.reload();
      else window.setTimeout(refresh, INTERVAL);
    });
  }

  window.setTimeout(refresh, INTERVAL);
})();
