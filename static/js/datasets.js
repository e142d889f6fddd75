// Dataset pages: rows and panels of queued or running jobs follow /api/v1/jobs/<id>/ every
// two seconds; a finished build reloads the page to show its summary.
(function () {
  "use strict";
  var INTERVAL = 2000;
  var ACTIVE = { queued: true, running: true, building: true };

  function watched() {
    return Array.prototype.filter.call(document.querySelectorAll("[data-job]"), function (el) {
      return el.dataset.job && (el.dataset.reload || ACTIVE[el.dataset.status]);
    });
  }

  function update(el, job) {
    el.dataset.status = job.status;
    var badge = el.querySelector('[data-field="status"]');
    if (badge) {
      badge.className = "badge badge-" + job.status;
      badge.textContent = job.status;
    }
    var box = el.querySelector(".progress");
    if (box) {
      box.className = "progress " + job.status + (box.classList.contains("progress-lg") ? " progress-lg" : "");
      box.setAttribute("aria-valuenow", String(job.percent));
      box.firstElementChild.style.width = job.percent + "%";
    }
    var progress = el.querySelector('[data-field="progress"]');
    if (progress) progress.textContent = job.done + " / " + job.total + " · " + job.percent + "%";
    var message = el.querySelector('[data-field="message"]');
    if (message && job.message) message.textContent = job.message;
  }

  function poll() {
    var elements = watched();
    if (!elements.length) return;
    var pending = elements.length;
    var reload = false;
    elements.forEach(function (el) {
      fetch("/api/v1/jobs/" + encodeURIComponent(el.dataset.job) + "/", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (job) {
          if (!job) return;
          update(el, job);
          var finished = job.status === "succeeded" || job.status === "failed";
          if (finished && (el.dataset.reload || el.closest("#versions-table"))) reload = true;
        })
        .catch(function () {})
        .then(function () {
          pending -= 1;
          if (pending) return;
          if (reload) window.location.reload();
          else window.setTimeout(poll, INTERVAL);
        });
    });
  }

  window.setTimeout(poll, INTERVAL);
})();
