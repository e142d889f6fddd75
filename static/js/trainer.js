// Quick trainer: running trainings update their progress bar every two seconds; when one
// finishes the page reloads to show its model version, figures and evaluation.
(function () {
  "use strict";
  var table = document.getElementById("trainings");
  if (!table || !table.dataset.live) return;
  var api = table.dataset.api;
  var INTERVAL = 2000;

  function activeRows() {
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
    var rows = activeRows();
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
