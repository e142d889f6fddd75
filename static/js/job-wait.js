// Pages that wait for a job (templates/_job_wait.html): the progress bar follows
// /api/v1/jobs/<id>/ every two seconds; when the job succeeds the page's result region is
// swapped in from a fresh copy of the page, so it updates in place. A failed job says so where
// the bar was. Page scripts marked data-job-rerun run again on the new content.
(function () {
  "use strict";
  var INTERVAL = 2000;
  var FINISHED = { succeeded: true, failed: true };
  var watched = [];
  var live = null;

  function announce(text) {
    if (!live) {
      live = document.createElement("div");
      live.className = "visually-hidden";
      live.setAttribute("role", "status");
      live.id = "job-wait-live";
      document.body.appendChild(live);
    }
    live.textContent = text;
  }

  function field(el, name) {
    return el.querySelector('[data-field="' + name + '"]');
  }

  function update(el, job) {
    el.dataset.status = job.status;
    var badge = field(el, "status");
    badge.className = "badge badge-" + job.status;
    badge.textContent = job.status;
    var bar = el.querySelector(".progress");
    bar.className = "progress " + job.status;
    bar.setAttribute("aria-valuenow", String(job.percent));
    bar.firstElementChild.style.width = job.percent + "%";
    field(el, "progress").textContent =
      job.done.toLocaleString() + " / " + job.total.toLocaleString() + " · " + job.percent + "%";
    field(el, "message").textContent = job.message || (job.status === "queued" ? "waiting for a worker" : "");
  }

  function rerunScripts() {
    document.querySelectorAll("script[data-job-rerun]").forEach(function (old) {
      var fresh = document.createElement("script");
      fresh.src = old.src;
      fresh.dataset.jobRerun = "";
      old.replaceWith(fresh);
    });
  }

  function swap(el, job) {
    var regions = (el.dataset.jobRegion || "main").split(",").map(function (s) {
      return s.trim();
    });
    field(el, "note").textContent = "Done; loading the result…";
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        regions.forEach(function (selector) {
          var now = document.querySelector(selector);
          var next = fresh.querySelector(selector);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        rerunScripts();
        announce("Job " + job.id + " finished; the page shows its result.");
        document.dispatchEvent(new CustomEvent("loupe:job-done", { detail: job }));
        scan();
      })
      .catch(function () {
        // The page could not be fetched: a plain reload shows the result all the same.
        window.location.reload();
      });
  }

  function fail(el, job) {
    field(el, "note").textContent = "The job failed" + (job.message ? ": " + job.message : ".") + " The Jobs page has the details.";
    el.classList.add("job-wait-failed");
    announce("Job " + job.id + " failed.");
  }

  function poll(el) {
    if (!document.contains(el)) return; // swapped out with its region
    if (document.hidden) {
      window.setTimeout(poll, INTERVAL, el);
      return;
    }
    fetch(el.dataset.jobUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .catch(function () {
        return null;
      })
      .then(function (job) {
        if (job) update(el, job);
        if (job && job.status === "succeeded") swap(el, job);
        else if (job && job.status === "failed") fail(el, job);
        else window.setTimeout(poll, INTERVAL, el);
      });
  }

  function scan() {
    document.querySelectorAll("[data-job-wait]").forEach(function (el) {
      if (watched.indexOf(el) !== -1 || FINISHED[el.dataset.status]) return;
      watched.push(el);
      window.setTimeout(poll, INTERVAL, el);
    });
  }

  scan();
})();
