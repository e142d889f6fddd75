// Tokens page: copy buttons, and a confirmation before revoking.
(function () {
  "use strict";
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on another host: the Clipboard API is unavailable, fall back to a selection.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.dataset.copy);
      copyText(source.textContent.trim()).then(
        function () {
          button.textContent = "Copied";
          window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
        },
        function () {
          button.textContent = "Select and copy by hand";
        }
      );
    });
  });

  document.querySelectorAll(".revoke-all-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm("Revoke all your tokens? Every script using one will stop working.")) {
        event.preventDefault();
      }
    });
  });

  document.querySelectorAll(".revoke-form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm("Revoke this token? Scripts using it will stop working.")) {
        event.preventDefault();
      }
    });
  });
})();
