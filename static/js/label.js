// Labelling page: one image at a time, every answer one key.
//
// The page keeps a few images ahead (decoded in memory), shows the next one the moment a key
// is pressed, and sends the answer in the background: one POST per key press, which also tops
// the prefetch back up. Requests go out one after another, so an undo always follows the answer
// it undoes and the ids the page holds are exact when each request is built.
//
// Class names are user data: they are only ever set with textContent, never parsed as HTML.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("lab-config").textContent);
  var classes = JSON.parse(document.getElementById("lab-classes").textContent);
  var target = config.prefetch || 5;

  var lab = document.getElementById("lab");
  var viewer = document.getElementById("viewer");
  var placeholder = document.getElementById("placeholder");
  var remainingEl = document.getElementById("remaining");
  var toasts = document.getElementById("toasts");
  var pickerInput = document.getElementById("picker-input");
  var pickerList = document.getElementById("picker-list");
  var badOverlay = document.getElementById("bad-overlay");
  var helpOverlay = document.getElementById("help-overlay");

  var shown = null; // the image payload on screen
  var held = []; // prefetched payloads after it, each with .el (a decoding <img>)
  var waitingSince = null; // key-press time while no image is ready to show
  var waitingAction = null;
  var chain = Promise.resolve();
  var exhausted = false;
  // Images answered on this page whose request has not been answered yet: a top-up computed
  // before the server sees the answer must not hand them back, so requests name them as held.
  var answered = {};
  var mode = "label"; // label | bad | help

  // Key press → next image on screen, in milliseconds; read by the browser test.
  window.__loupeTimings = [];
  window.__loupePending = 0; // requests not yet answered; the browser test waits for 0

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function request(method, url, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = csrfToken();
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          return { status: response.status, data: data };
        });
    });
  }

  // Requests run one at a time, in key-press order; ``build`` makes the request when its turn
  // comes, so it sees the prefetch as it is then.
  function enqueue(build) {
    window.__loupePending += 1;
    chain = chain
      .then(build)
      .catch(function (error) {
        toast("The server could not be reached (" + error.message + "). Check your connection.", "error");
      })
      .then(function () {
        window.__loupePending -= 1;
      });
    return chain;
  }

  function errorText(data, fallback) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && typeof data === "object") {
      for (var key in data) {
        var value = data[key];
        if (Array.isArray(value) && value.length) return String(value[0]);
        if (typeof value === "string") return value;
      }
    }
    return fallback;
  }

  function toast(message, kind) {
    var item = document.createElement("div");
    item.className = "toast toast-" + (kind || "info");
    item.textContent = message;
    toasts.appendChild(item);
    setTimeout(function () {
      item.remove();
    }, kind === "error" ? 7000 : 2500);
  }

  // --- Images -----------------------------------------------------------------------------

  function preload(item) {
    if (item.el) return item;
    var img = new Image();
    img.alt = "Image " + item.id;
    img.className = "lab-image";
    if (item.width && item.height) {
      img.width = item.width;
      img.height = item.height;
    }
    img.src = item.display_url || item.file_url;
    item.el = img;
    item.ready = img.decode ? img.decode().catch(function () {}) : Promise.resolve();
    return item;
  }

  function isOnPage(id) {
    if (shown && shown.id === id) return true;
    for (var i = 0; i < held.length; i++) if (held[i].id === id) return true;
    return false;
  }

  function onPageIds() {
    var ids = held.map(function (item) {
      return item.id;
    });
    if (shown) ids.unshift(shown.id);
    return ids;
  }

  function heldIds() {
    return onPageIds().concat(Object.keys(answered).map(Number));
  }

  function topUpCount() {
    return Math.max(0, target - onPageIds().length);
  }

  function receive(data) {
    if (typeof data.remaining === "number") remainingEl.textContent = data.remaining.toLocaleString();
    var next = data.next || [];
    next.forEach(function (item) {
      if (!isOnPage(item.id) && !answered[item.id]) held.push(preload(item));
    });
    exhausted = next.length === 0 && held.length === 0;
    if (!shown) showNext(waitingSince, waitingAction);
  }

  function record(t0, item, action) {
    if (t0 === null || t0 === undefined) return;
    item.ready.then(function () {
      requestAnimationFrame(function () {
        if (shown !== item) return;
        window.__loupeTimings.push({
          image: item.id,
          action: action,
          ms: performance.now() - t0,
        });
      });
    });
  }

  function display(item, t0, action) {
    shown = item;
    waitingSince = null;
    viewer.replaceChildren(item.el);
    lab.dataset.state = "labelling";
    lab.dataset.image = String(item.id);
    document.getElementById("done").hidden = true;
    renderCaption(item);
    renderSuggestions(item);
    renderStandards(item);
    record(t0, item, action);
  }

  function showNext(t0, action) {
    var item = held.shift();
    if (item) {
      display(item, t0, action);
      return;
    }
    shown = null;
    lab.dataset.image = "";
    document.getElementById("caption").hidden = true;
    if (exhausted) {
      lab.dataset.state = "done";
      viewer.replaceChildren();
      document.getElementById("done").hidden = false;
      renderSuggestions(null);
    } else {
      lab.dataset.state = "loading";
      placeholder.textContent = "Loading the next image…";
      viewer.replaceChildren(placeholder);
      waitingSince = t0 === undefined ? null : t0;
      waitingAction = action || null;
    }
  }

  function renderCaption(item) {
    var caption = document.getElementById("caption");
    caption.hidden = false;
    // A blind queue's caption is no link: the image page shows the first label.
    if (config.urls.image_page) {
      document.getElementById("caption-link").href = config.urls.image_page.replace("{id}", item.id);
    }
    document.getElementById("caption-id").textContent = String(item.id);
    var labelText = item.label ? "· labelled " + item.label : "· unlabelled";
    if (config.blind) labelText = "· second opinion: the first label is hidden";
    document.getElementById("caption-label").textContent = labelText;
    var bad = document.getElementById("caption-bad");
    var reason = item.bad_reason ? reasonLabel(item.bad_reason) : "";
    bad.hidden = !reason;
    bad.textContent = reason ? "marked bad: " + reason : "";
  }

  function reasonLabel(value) {
    for (var i = 0; i < config.bad_reasons.length; i++) {
      if (config.bad_reasons[i].value === value) return config.bad_reasons[i].label;
    }
    return value;
  }

  function renderSuggestions(item) {
    var list = document.getElementById("suggestions");
    var rows = item ? item.suggestions || [] : [];
    list.replaceChildren();
    document.getElementById("no-suggestions").hidden = !item || rows.length > 0;
    rows.forEach(function (suggestion, index) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "suggestion";
      var assignable = Boolean(suggestion.subclass_id);
      if (!assignable) {
        button.classList.add("suggestion-missing");
        button.setAttribute("aria-disabled", "true");
        button.title = "The library has no class named like this; choose another answer.";
      }
      var key = document.createElement("kbd");
      key.textContent = String(index + 1);
      var name = document.createElement("span");
      name.className = "suggestion-name";
      name.textContent = suggestion.name + (assignable ? "" : " (not in library)");
      var score = document.createElement("span");
      score.className = "suggestion-score";
      score.textContent = Math.round(suggestion.score * 100) + "%";
      var bar = document.createElement("span");
      bar.className = "suggestion-bar";
      bar.style.width = Math.max(2, Math.round(suggestion.score * 100)) + "%";
      button.append(key, name, score, bar);
      button.addEventListener("click", function () {
        pickSuggestion(index, performance.now());
      });
      li.appendChild(button);
      list.appendChild(li);
    });
  }

  // --- Answers ----------------------------------------------------------------------------

  function act(action, extra, t0) {
    if (!shown) {
      toast(exhausted ? "Nothing left to label here." : "The next image is still loading.", "info");
      return;
    }
    var item = shown;
    answered[item.id] = true;
    showNext(t0, action);
    enqueue(function () {
      var body = {
        queue: config.queue,
        image: item.id,
        version: item.version,
        action: action,
        holding: heldIds(),
        count: topUpCount(),
      };
      for (var key in extra) body[key] = extra[key];
      return request("POST", config.urls.act, body).then(function (response) {
        // From here on the server knows the answer and keeps the image out of top-ups itself.
        delete answered[item.id];
        if (response.status === 200) {
          receive(response.data);
        } else if (response.status === 409) {
          // Someone else holds or changed the image: nothing was saved, and we move on.
          toast(errorText(response.data, "Someone else changed this image; it was left alone."), "error");
          if (topUpCount() > 0) refill();
        } else {
          // Not saved for a reason the labeller can act on: show the image again.
          toast("Not saved: " + errorText(response.data, "error " + response.status) + " The image is shown again.", "error");
          if (shown) held.unshift(shown);
          display(item, null);
        }
      });
    });
  }

  function refill() {
    enqueue(function () {
      var params = new URLSearchParams({ queue: config.queue, count: String(Math.max(1, topUpCount())) });
      heldIds().forEach(function (id) {
        params.append("holding", String(id));
      });
      return request("GET", config.urls.queue + "?" + params.toString()).then(function (response) {
        if (response.status === 200) {
          receive(response.data);
        } else {
          toast(errorText(response.data, "Could not load the queue."), "error");
        }
      });
    });
  }

  function pickSuggestion(index, t0) {
    var suggestion = shown && (shown.suggestions || [])[index];
    if (!suggestion) {
      toast("There is no suggestion " + (index + 1) + " for this image.", "info");
      return;
    }
    if (!suggestion.subclass_id) {
      toast("“" + suggestion.name + "” is not a class in this library; choose another answer.", "error");
      return;
    }
    act("label", { subclass: suggestion.subclass_id }, t0);
  }

  function sendToHolding(t0) {
    if (!config.holding) {
      toast("There is no holding class (such as Unknown) yet; a reviewer can add one.", "error");
      return;
    }
    act("unknown", { holding_class: config.holding.id }, t0);
  }

  function undo(t0) {
    enqueue(function () {
      // The queue makes the answer count what is left in it (the image is back) and, for a
      // blind queue, keep the first label hidden.
      return request("POST", config.urls.undo, { queue: config.queue }).then(function (response) {
        if (response.status === 200) {
          if (typeof response.data.remaining === "number") {
            remainingEl.textContent = response.data.remaining.toLocaleString();
          }
          var item = preload(response.data.image);
          delete answered[item.id];
          held = held.filter(function (other) {
            return other.id !== item.id;
          });
          if (shown && shown.id !== item.id) held.unshift(shown);
          exhausted = false;
          display(item, t0, "undo");
          toast("Undone: image " + item.id + " is back.", "info");
        } else {
          toast(errorText(response.data, "Nothing to undo."), response.status === 404 ? "info" : "error");
        }
      });
    });
  }

  // --- Overlays ---------------------------------------------------------------------------

  function openOverlay(name) {
    closeOverlays();
    mode = name;
    (name === "bad" ? badOverlay : helpOverlay).hidden = false;
  }

  function closeOverlays() {
    mode = "label";
    badOverlay.hidden = true;
    helpOverlay.hidden = true;
  }

  var reasonByKey = {};
  config.bad_reasons.forEach(function (reason) {
    reasonByKey[reason.key] = reason.value;
  });

  badOverlay.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-reason]");
    if (button) {
      closeOverlays();
      act("bad", { bad_reason: button.dataset.reason }, performance.now());
    } else if (event.target === badOverlay) {
      closeOverlays();
    }
  });
  helpOverlay.addEventListener("click", closeOverlays);
  document.getElementById("help-button").addEventListener("click", function () {
    openOverlay("help");
  });

  document.querySelector(".lab-actions").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var action = button.dataset.action;
    var t0 = performance.now();
    if (action === "unknown") sendToHolding(t0);
    else if (action === "bad") openOverlay("bad");
    else if (action === "skip") act("skip", {}, t0);
    else if (action === "undo") undo(t0);
    button.blur();
  });

  // --- Class picker -----------------------------------------------------------------------

  var PICKER_ROWS = 60;
  var pickerRows = [];
  var pickerActive = 0;

  function norm(text) {
    return text.toLowerCase();
  }

  function buildPickerRows(needle) {
    var rows = [];
    var query = norm(needle.trim());
    var classPart = query;
    var subPart = "";
    var slash = query.indexOf("/");
    if (slash !== -1) {
      classPart = query.slice(0, slash).trim();
      subPart = query.slice(slash + 1).trim();
    }
    for (var c = 0; c < classes.length && rows.length < PICKER_ROWS; c++) {
      var cls = classes[c];
      var classMatches = !classPart || norm(cls.name).indexOf(classPart) !== -1;
      var defaultSub = null;
      var subs = [];
      cls.subclasses.forEach(function (sub) {
        if (sub.default) defaultSub = sub;
        else subs.push(sub);
      });
      var matchingSubs = subs.filter(function (sub) {
        if (slash !== -1) return classMatches && (!subPart || norm(sub.name).indexOf(subPart) !== -1);
        return !query || classMatches || norm(sub.name).indexOf(query) !== -1;
      });
      var showClass = slash !== -1 ? classMatches && !subPart : classMatches;
      if (!showClass && !matchingSubs.length) continue;
      if (showClass && defaultSub) {
        rows.push({ kind: "class", cls: cls, subclass: defaultSub });
      } else {
        // Matching sub-classes still appear under their class's name, which is not an answer.
        rows.push({ kind: "header", cls: cls });
      }
      matchingSubs.forEach(function (sub) {
        rows.push({ kind: "sub", cls: cls, subclass: sub });
      });
    }
    if (config.is_reviewer && slash !== -1 && subPart) {
      var exact = classes.filter(function (cls) {
        return norm(cls.name) === classPart;
      });
      var parent = exact[0];
      if (!parent) {
        var prefixed = classes.filter(function (cls) {
          return norm(cls.name).indexOf(classPart) === 0;
        });
        if (prefixed.length === 1) parent = prefixed[0];
      }
      if (parent) {
        var clash = parent.subclasses.some(function (sub) {
          return norm(sub.name) === subPart;
        });
        if (!clash) {
          var rawName = needle.slice(needle.indexOf("/") + 1).trim();
          rows.push({ kind: "create", cls: parent, name: rawName });
        }
      }
    }
    return rows;
  }

  function renderPicker() {
    var entries = buildPickerRows(pickerInput.value);
    pickerRows = entries.filter(function (row) {
      return row.kind !== "header";
    });
    if (pickerActive >= pickerRows.length) pickerActive = Math.max(0, pickerRows.length - 1);
    pickerList.replaceChildren();
    pickerInput.removeAttribute("aria-activedescendant");
    if (!pickerRows.length) {
      var empty = document.createElement("li");
      empty.className = "picker-empty";
      empty.textContent = config.is_reviewer
        ? "No match. To add a sub-class, type Class / new name."
        : "No class or sub-class matches.";
      pickerList.appendChild(empty);
    }
    entries.forEach(function (row) {
      var li = document.createElement("li");
      if (row.kind === "header") {
        li.className = "picker-header";
        li.setAttribute("role", "presentation");
        li.textContent = row.cls.name;
        pickerList.appendChild(li);
        return;
      }
      var index = pickerRows.indexOf(row);
      li.id = "picker-row-" + index;
      li.setAttribute("role", "option");
      li.className = "picker-row picker-" + row.kind;
      if (index === pickerActive) {
        li.classList.add("active");
        li.setAttribute("aria-selected", "true");
        pickerInput.setAttribute("aria-activedescendant", li.id);
      }
      var name = document.createElement("span");
      name.className = "picker-name";
      if (row.kind === "class") {
        name.textContent = row.cls.name;
      } else if (row.kind === "sub") {
        name.textContent = row.subclass.name;
      } else {
        name.textContent = "+ New sub-class “" + row.name + "” in " + row.cls.name;
      }
      li.appendChild(name);
      if (row.kind === "class" && row.cls.holding) {
        var badge = document.createElement("span");
        badge.className = "badge badge-holding";
        badge.textContent = "holding";
        li.appendChild(badge);
      }
      if (row.kind === "sub" && row.subclass.source !== "real") {
        var source = document.createElement("span");
        source.className = "badge badge-" + row.subclass.source;
        source.textContent = row.subclass.source;
        li.appendChild(source);
      }
      li.addEventListener("mousedown", function (event) {
        event.preventDefault();
        pickerActive = index;
        choosePickerRow(performance.now());
      });
      pickerList.appendChild(li);
    });
    pickerList.hidden = false;
    pickerInput.setAttribute("aria-expanded", "true");
    var active = document.getElementById("picker-row-" + pickerActive);
    if (active && active.scrollIntoView) active.scrollIntoView({ block: "nearest" });
  }

  function closePicker() {
    pickerInput.value = "";
    pickerList.hidden = true;
    pickerInput.setAttribute("aria-expanded", "false");
    pickerInput.removeAttribute("aria-activedescendant");
    pickerInput.blur();
  }

  function choosePickerRow(t0) {
    var row = pickerRows[pickerActive];
    if (!row) return;
    closePicker();
    if (row.kind === "create") {
      createSubclassAndLabel(row.cls, row.name, t0);
    } else {
      act("label", { subclass: row.subclass.id }, t0);
    }
  }

  function createSubclassAndLabel(cls, name, t0) {
    if (!shown) return;
    var item = shown;
    request("POST", config.urls.subclasses, { label_class: cls.id, name: name, source: "real" }).then(
      function (response) {
        if (response.status !== 201) {
          toast("Sub-class not created: " + errorText(response.data, "error " + response.status), "error");
          return;
        }
        var created = response.data;
        cls.subclasses.push({ id: created.id, name: created.name, source: created.source || "real", default: false });
        toast("Sub-class “" + created.name + "” added to " + cls.name + ".", "info");
        if (shown === item) act("label", { subclass: created.id }, t0);
      },
      function (error) {
        toast("The server could not be reached (" + error.message + ").", "error");
      }
    );
  }

  pickerInput.addEventListener("input", function () {
    pickerActive = 0;
    renderPicker();
  });
  pickerInput.addEventListener("focus", renderPicker);
  pickerInput.addEventListener("blur", function () {
    pickerList.hidden = true;
    pickerInput.setAttribute("aria-expanded", "false");
  });
  pickerInput.addEventListener("keydown", function (event) {
    var t0 = event.timeStamp || performance.now();
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!pickerRows.length) return;
      var step = event.key === "ArrowDown" ? 1 : -1;
      pickerActive = (pickerActive + step + pickerRows.length) % pickerRows.length;
      renderPicker();
    } else if (event.key === "Enter") {
      event.preventDefault();
      choosePickerRow(t0);
    } else if (event.key === "Escape") {
      event.preventDefault();
      closePicker();
    }
    event.stopPropagation();
  });

  // --- Standards panel --------------------------------------------------------------------

  var standardsCache = {};
  var standardsShownFor = null;
  var standardsBox = document.getElementById("standards");
  var standardsToggle = document.getElementById("standards-toggle");
  var standardsBody = document.getElementById("standards-body");

  function setStandardsOpen(open) {
    standardsBody.hidden = !open;
    standardsToggle.setAttribute("aria-expanded", String(open));
    standardsBox.classList.toggle("collapsed", !open);
    try {
      localStorage.setItem("loupe.standards.open", open ? "1" : "0");
    } catch (e) {
      /* private mode: the choice just isn't remembered */
    }
    if (open && shown) renderStandards(shown);
  }

  function standardsClassOf(item) {
    if (item.class_id) return item.class_id;
    var rows = item.suggestions || [];
    for (var i = 0; i < rows.length; i++) if (rows[i].class_id) return rows[i].class_id;
    return null;
  }

  function exemplarList(container, rows, emptyText) {
    container.replaceChildren();
    if (!rows.length) {
      var none = document.createElement("p");
      none.className = "muted small";
      none.textContent = emptyText;
      container.appendChild(none);
      return;
    }
    rows.forEach(function (row) {
      var link = document.createElement("a");
      link.href = row.page_url;
      link.target = "_blank";
      link.rel = "noopener";
      link.title = row.note || "Image " + row.image;
      var img = document.createElement("img");
      img.src = row.thumbnail_url;
      img.alt = row.note || "Image " + row.image;
      img.loading = "lazy";
      link.appendChild(img);
      container.appendChild(link);
    });
  }

  function fillStandards(data) {
    document.getElementById("standards-empty").hidden = true;
    document.getElementById("standards-content").hidden = false;
    document.getElementById("standards-class").textContent = ": " + data.name;
    var description = document.getElementById("standards-description");
    description.textContent = data.description || "No description written for this class yet.";
    description.classList.toggle("muted", !data.description);
    exemplarList(document.getElementById("standards-good"), data.good, "None pinned.");
    exemplarList(document.getElementById("standards-bad"), data.bad, "None pinned.");
    document.getElementById("standards-link").href = data.page_url;
  }

  function renderStandards(item) {
    var classId = standardsClassOf(item);
    if (classId === standardsShownFor) return;
    if (classId === null) {
      standardsShownFor = null;
      document.getElementById("standards-class").textContent = "";
      document.getElementById("standards-empty").hidden = false;
      document.getElementById("standards-content").hidden = true;
      return;
    }
    if (standardsBody.hidden) return; // fetched when opened
    standardsShownFor = classId;
    if (standardsCache[classId]) {
      fillStandards(standardsCache[classId]);
      return;
    }
    fetch(config.urls.standards_panel.replace("{id}", classId), { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        standardsCache[classId] = data;
        if (standardsShownFor === classId) fillStandards(data);
      })
      .catch(function () {});
  }

  standardsToggle.addEventListener("click", function () {
    setStandardsOpen(standardsBody.hidden);
  });
  var remembered = null;
  try {
    remembered = localStorage.getItem("loupe.standards.open");
  } catch (e) {
    remembered = null;
  }
  setStandardsOpen(remembered !== "0");

  // --- Keyboard ---------------------------------------------------------------------------

  var MODIFIERS = { Shift: true, Control: true, Alt: true, Meta: true, CapsLock: true };

  function isTyping(target) {
    var tag = (target.tagName || "").toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var t0 = event.timeStamp || performance.now();
    var key = event.key;
    if (mode === "bad") {
      event.preventDefault();
      if (key === "Escape" || key === "b") {
        closeOverlays();
      } else if (Object.prototype.hasOwnProperty.call(reasonByKey, key)) {
        closeOverlays();
        act("bad", { bad_reason: reasonByKey[key] }, t0);
      } else {
        toast("Press a reason's key, or Esc to cancel.", "info");
      }
      return;
    }
    if (mode === "help") {
      // Esc or ? only closes the list; any other key closes it and does what it does. A
      // modifier alone (the Shift of "?") changes nothing.
      if (MODIFIERS[key]) return;
      closeOverlays();
      if (key === "Escape" || key === "?") {
        event.preventDefault();
        return;
      }
    }
    if (isTyping(event.target)) return;
    if (event.repeat) return; // a held key must not answer a run of images
    var handled = true;
    if (key === "1" || key === "2" || key === "3") pickSuggestion(Number(key) - 1, t0);
    else if (key === "?") openOverlay("help");
    else if (key === "/") pickerInput.focus();
    else if (key === "u") sendToHolding(t0);
    else if (key === "b") {
      if (shown) openOverlay("bad");
      else toast("No image to judge.", "info");
    } else if (key === "s") act("skip", {}, t0);
    else if (key === "z") undo(t0);
    else if (key === "i") setStandardsOpen(standardsBody.hidden);
    else handled = false;
    if (handled) event.preventDefault();
  });

  // --- Start ------------------------------------------------------------------------------

  refill();
})();
