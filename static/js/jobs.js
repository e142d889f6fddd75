// Jobs page: rows of queued or running jobs refresh every two seconds until they finish.
(function () {
  "use strict";
  var table = document.getElementById("jobs-table");
  if (!table) return;
  var api = table.dataset.api;
  var live = document.getElementById("jobs-live");
  var INTERVAL = 2000;

  function activeRows() {
    return Array.prototype.filter.call(table.querySelectorAll("tr[data-job]"), function (row) {
      return row.dataset.status === "queued" || row.dataset.status === "running";
    });
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function clock(iso) {
    var d = new Date(iso);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function update(row, job) {
    row.dataset.status = job.status;
    var badge = row.querySelector('[data-field="status"]');
    badge.className = "badge badge-" + job.status;
    badge.textContent = job.status;
    var box = row.querySelector(".progress");
    box.className = "progress " + job.status;
    box.setAttribute("aria-valuenow", String(job.percent));
    box.firstElementChild.style.width = job.percent + "%";
    row.querySelector('[data-field="progress"]').textContent =
      job.done + " / " + job.total + " · " + job.percent + "%";
    row.querySelector('[data-field="message"]').textContent = job.message || "";
    var when = row.querySelector('[data-field="finished"]');
    if (job.finished_at) when.textContent = "finished " + clock(job.finished_at);
    else if (job.started_at) when.textContent = "started " + clock(job.started_at);
  }

  function refresh() {
    var rows = activeRows();
    if (!rows.length) {
      live.textContent = "";
      return;
    }
    live.textContent = rows.length + " job" + (rows.length === 1 ? "" : "s") + " in progress · updating";
    if (document.hidden) {
      window.setTimeout(refresh, INTERVAL);
      return;
    }
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
            if (job) update(row, job);
          })
          .catch(function () {});
      })
    ).then(function () {
      window.setTimeout(refresh, INTERVAL);
    });
  }

  refresh();
})();
