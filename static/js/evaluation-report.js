// Evaluation report: the threshold slider recomputes the threshold report from the shipped
// top-score histograms (right and wrong counts per 0.001), and tables sort by any column.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("ev-slider").textContent || "{}");
  const input = document.getElementById("threshold-input");
  const output = document.getElementById("threshold-value");
  const histogram = data.histogram || {};
  const right = histogram.right || [];
  const wrong = histogram.wrong || [];
  const sum = function (values, start) {
    let total = 0;
    for (let i = start; i < values.length; i++) total += values[i];
    return total;
  };
  const total = sum(right, 0) + sum(wrong, 0);
  const fmt = new Intl.NumberFormat();
  const share = function (n) { return total ? (100 * n / total).toFixed(1) + "%" : "–"; };

  function update() {
    const threshold = parseFloat(input.value);
    output.textContent = threshold.toFixed(2);
    const start = Math.min(data.bins, Math.max(0, Math.round(threshold * data.bins)));
    const aboveRight = sum(right, start);
    const aboveWrong = sum(wrong, start);
    const below = total - aboveRight - aboveWrong;
    const cells = {
      above_right: fmt.format(aboveRight),
      true_positive_rate: share(aboveRight),
      above_wrong: fmt.format(aboveWrong),
      false_positive_rate: share(aboveWrong),
      below: fmt.format(below),
      below_rate: share(below),
    };
    document.querySelectorAll("[data-t]").forEach(function (cell) {
      cell.textContent = cells[cell.dataset.t];
    });
    const url = new URL(window.location.href);
    url.searchParams.set("threshold", threshold.toFixed(2));
    window.history.replaceState(null, "", url);
  }

  if (input && data.bins) {
    input.addEventListener("input", update);
    update();
  }

  document.querySelectorAll("table.ev-sortable").forEach(function (table) {
    const headers = Array.from(table.querySelectorAll("th[data-sort]"));
    headers.forEach(function (th, column) {
      th.tabIndex = 0;
      const sort = function () {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const numeric = th.dataset.sort === "num";
        rows.sort(function (a, b) {
          const x = a.cells[column].textContent.trim();
          const y = b.cells[column].textContent.trim();
          const order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sort();
        }
      });
    });
  });
})();
