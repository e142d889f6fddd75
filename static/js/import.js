// Import page: uploads files (in chunks) or one zip archive to the REST API, shows progress,
// then the per-file report. File names are user data: they are only ever set as textContent.
(function () {
  "use strict";
  var form = document.getElementById("import-form");
  if (!form) return;
  var filesInput = document.getElementById("import-files");
  var archiveInput = document.getElementById("import-archive");
  var subclassSelect = document.getElementById("import-subclass");
  var sourceSelect = document.getElementById("import-source");
  var foldersChoice = document.getElementById("folders-choice");
  var startButton = document.getElementById("import-start");
  var hint = document.getElementById("import-hint");
  var dropzone = document.getElementById("dropzone");
  var panel = document.getElementById("import-progress");
  var phase = document.getElementById("import-phase");
  var percentLabel = document.getElementById("import-percent");
  var bar = document.getElementById("import-bar");
  var barBox = bar.parentNode;
  var errorBox = document.getElementById("import-error");
  var report = document.getElementById("import-report");
  var reportBody = report.querySelector("tbody");
  var links = document.getElementById("import-links");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var perRequest = parseInt(form.dataset.filesPerRequest, 10) || 50;
  var counts = { created: 0, duplicate: 0, rejected: 0 };
  var MAX_REPORT_ROWS = 2000;

  function destination() {
    var checked = form.querySelector("input[name=destination]:checked");
    return checked ? checked.value : "inbox";
  }

  // Page URLs come rendered for id 0 ("/images/0/"); API list URLs take the id appended.
  function urlFor(template, id) {
    return template.replace(/\/0\/$/, "/" + encodeURIComponent(id) + "/");
  }

  function detailUrl(listUrl, id) {
    return listUrl + encodeURIComponent(id) + "/";
  }

  function refreshHint() {
    var nFiles = filesInput.files.length;
    var hasArchive = archiveInput.files.length > 0;
    var folders = foldersChoice.querySelector("input");
    folders.disabled = !hasArchive;
    foldersChoice.classList.toggle("disabled", !hasArchive);
    if (!hasArchive && folders.checked) {
      form.querySelector("input[name=destination][value=inbox]").checked = true;
    }
    if (hasArchive && nFiles) {
      hint.textContent = "Choose either files or a zip archive, not both.";
    } else if (hasArchive) {
      hint.textContent = "1 zip archive: " + archiveInput.files[0].name;
    } else if (nFiles) {
      hint.textContent = nFiles + " file" + (nFiles === 1 ? "" : "s") + " chosen.";
    } else {
      hint.textContent = "Choose files or a zip archive.";
    }
    startButton.disabled = (hasArchive && nFiles > 0) || (!hasArchive && !nFiles);
  }

  function setProgress(fraction, label) {
    var percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.style.width = percent + "%";
    barBox.setAttribute("aria-valuenow", String(percent));
    percentLabel.textContent = percent + "%";
    if (label) phase.textContent = label;
  }

  function showError(message) {
    errorBox.hidden = false;
    errorBox.textContent = message;
    barBox.classList.add("failed");
  }

  function bump(outcome) {
    if (counts[outcome] === undefined) return;
    counts[outcome] += 1;
    var el = document.querySelector('[data-count="' + outcome + '"]');
    if (el) el.textContent = String(counts[outcome]);
  }

  function addRow(name, outcome, reason, imageId) {
    bump(outcome);
    if (reportBody.rows.length >= MAX_REPORT_ROWS) return;
    report.hidden = false;
    var row = reportBody.insertRow();
    var nameCell = row.insertCell();
    nameCell.className = "break";
    nameCell.textContent = name;
    var outcomeCell = row.insertCell();
    var badge = document.createElement("span");
    badge.className = "badge badge-" + outcome;
    badge.textContent = outcome;
    outcomeCell.appendChild(badge);
    var detail = row.insertCell();
    detail.className = "break small";
    if (imageId) {
      var link = document.createElement("a");
      link.href = urlFor(form.dataset.imagePage, imageId);
      link.textContent = "image " + imageId;
      detail.appendChild(link);
      if (reason) detail.appendChild(document.createTextNode(" · "));
    }
    if (reason) detail.appendChild(document.createTextNode(reason));
  }

  function addBatchLink(batchId) {
    if (!batchId) return;
    var link = document.createElement("a");
    link.href = urlFor(form.dataset.batchPage, batchId);
    link.textContent = "import #" + batchId;
    if (links.childNodes.length) links.appendChild(document.createTextNode(", "));
    links.appendChild(link);
  }

  // XMLHttpRequest rather than fetch: it reports upload progress.
  function send(url, body, onUpload) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (event) {
        if (event.lengthComputable && onUpload) onUpload(event.loaded, event.total);
      };
      xhr.onload = function () {
        var data = null;
        try {
          data = JSON.parse(xhr.responseText);
        } catch (ignored) {
          data = null;
        }
        resolve({ status: xhr.status, data: data });
      };
      xhr.onerror = function () {
        reject(new Error("The upload failed: the server could not be reached."));
      };
      xhr.send(body);
    });
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(
      function (response) {
        if (!response.ok) throw new Error("The server answered " + response.status + ".");
        return response.json();
      }
    );
  }

  function problem(result) {
    if (result.data && result.data.detail) return result.data.detail;
    if (result.status === 413) return "The upload is too large for the server.";
    if (result.status === 403) return "You are not allowed to import (or your session expired).";
    return "The server answered " + result.status + ".";
  }

  function uploadFiles(files) {
    var chunks = [];
    for (var i = 0; i < files.length; i += perRequest) chunks.push(files.slice(i, i + perRequest));
    var totalBytes = files.reduce(function (sum, f) { return sum + f.size; }, 0) || 1;
    var doneBytes = 0;
    var subclass = destination() === "subclass" ? subclassSelect.value : "";
    var batchId = null;  // later parts join the first part's batch: one report per upload

    function next(index) {
      if (index >= chunks.length) {
        setProgress(1, "Done: " + files.length + " file" + (files.length === 1 ? "" : "s") + " processed.");
        barBox.classList.add("succeeded");
        return Promise.resolve();
      }
      var chunk = chunks[index];
      var chunkBytes = chunk.reduce(function (sum, f) { return sum + f.size; }, 0);
      var body = new FormData();
      chunk.forEach(function (file) { body.append("files", file, file.name); });
      if (subclass) body.append("subclass", subclass);
      if (batchId) body.append("batch", batchId);
      var label = chunks.length > 1 ? "Uploading part " + (index + 1) + " of " + chunks.length + "…" : "Uploading…";
      setProgress(doneBytes / totalBytes, label);
      return send(form.dataset.imagesUrl, body, function (loaded) {
        setProgress((doneBytes + Math.min(loaded, chunkBytes)) / totalBytes, label);
      }).then(function (result) {
        doneBytes += chunkBytes;
        if (result.data && Array.isArray(result.data.files)) {
          result.data.files.forEach(function (item) {
            addRow(item.name, item.outcome, item.reason, item.image ? item.image.id : null);
          });
          if (!batchId) addBatchLink(result.data.batch);
          batchId = result.data.batch;
        } else {
          throw new Error(problem(result));
        }
        return next(index + 1);
      });
    }
    return next(0);
  }

  function poll(jobUrl, batchId) {
    return new Promise(function (resolve, reject) {
      function tick() {
        getJSON(jobUrl).then(function (job) {
          var fraction = job.total ? job.done / job.total : 0;
          var message = job.message || (job.done + " of " + job.total + " files");
          if (job.status === "succeeded") {
            setProgress(1, "Done: " + message + ".");
            barBox.classList.add("succeeded");
            resolve(job);
          } else if (job.status === "failed") {
            setProgress(fraction, "Import failed.");
            reject(new Error(job.error || job.message || "The import job failed."));
          } else {
            setProgress(fraction, (job.status === "queued" ? "Waiting for a worker… " : "Importing: ") + message);
            window.setTimeout(tick, 1000);
          }
        }, reject);
      }
      tick();
    }).then(function () { return loadItems(batchId); }, function (error) {
      return loadItems(batchId).then(function () { throw error; });
    });
  }

  function loadItems(batchId) {
    var url = detailUrl(form.dataset.importsUrl, batchId) + "items/?page_size=500";
    function page(pageUrl, loaded) {
      return getJSON(pageUrl).then(function (data) {
        data.results.forEach(function (item) { addRow(item.name, item.outcome, item.reason, item.image); });
        loaded += data.results.length;
        if (data.next && loaded < MAX_REPORT_ROWS) return page(data.next, loaded);
        return null;
      });
    }
    return page(url, 0);
  }

  function uploadArchive(archive) {
    var body = new FormData();
    body.append("archive", archive, archive.name);
    var where = destination();
    if (where === "inbox") body.append("inbox", "true");
    if (where === "subclass") body.append("subclass", subclassSelect.value);
    if (where === "folders") body.append("source", sourceSelect.value);
    setProgress(0, "Uploading the archive…");
    return send(form.dataset.importsUrl, body, function (loaded, total) {
      setProgress(loaded / total, "Uploading the archive…");
    }).then(function (result) {
      if (result.status !== 202 || !result.data || !result.data.job) throw new Error(problem(result));
      var batchId = result.data.batch.id;
      addBatchLink(batchId);
      setProgress(0, "Waiting for a worker…");
      return poll(detailUrl(form.dataset.jobsUrl, result.data.job.id), batchId);
    });
  }

  function reset() {
    counts = { created: 0, duplicate: 0, rejected: 0 };
    document.querySelectorAll("[data-count]").forEach(function (el) { el.textContent = "0"; });
    reportBody.textContent = "";
    report.hidden = true;
    links.textContent = "";
    errorBox.hidden = true;
    barBox.classList.remove("failed", "succeeded");
    panel.hidden = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (destination() === "subclass" && !subclassSelect.value) {
      subclassSelect.focus();
      hint.textContent = "Choose the class / sub-class the files go to.";
      return;
    }
    var files = Array.prototype.slice.call(filesInput.files);
    var archive = archiveInput.files[0];
    if (!files.length && !archive) return;
    reset();
    startButton.disabled = true;
    var work = archive ? uploadArchive(archive) : uploadFiles(files);
    work.catch(function (error) {
      showError(error.message);
    }).then(function () {
      form.reset();
      refreshHint();
    });
  });

  subclassSelect.addEventListener("change", function () {
    if (subclassSelect.value) form.querySelector("input[name=destination][value=subclass]").checked = true;
  });
  filesInput.addEventListener("change", refreshHint);
  archiveInput.addEventListener("change", refreshHint);

  ["dragenter", "dragover"].forEach(function (name) {
    dropzone.addEventListener(name, function (event) {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    dropzone.addEventListener(name, function () { dropzone.classList.remove("dragging"); });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    var dropped = event.dataTransfer.files;
    if (!dropped.length) return;
    if (dropped.length === 1 && /\.zip$/i.test(dropped[0].name)) {
      archiveInput.files = dropped;
    } else {
      filesInput.files = dropped;
    }
    refreshHint();
  });

  refreshHint();
})();
