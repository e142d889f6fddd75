// Library: "/" jumps to the class search.
(function () {
  "use strict";
  var search = document.getElementById("class-search");
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select") return;
    if (search) {
      event.preventDefault();
      search.focus();
      search.select();
    }
  });
})();
