/* Tuning, model and report pages. A static file because the Content-Security-Policy runs no inline script. */
(function () {
  "use strict";

  /* A form with data-confirm asks before it is sent (the rollback buttons). */
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();

/* Tuning and report pages: error messages swapped in, the threshold slider. */
(function () {
  /* A 400 from the what-if or the suggestions carries the message to show: swap it in (htmx does not by default). */
  document.body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 400 && event.detail.target.closest(".mlops")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  /* Keep each slider and its number box (data-pair: the box's id) in step; htmx sends the box's value. */
  document.querySelectorAll("input[type=range][data-pair]").forEach(function (range) {
    var box = document.getElementById(range.getAttribute("data-pair"));
    if (!box) return;
    range.addEventListener("input", function () { box.value = range.value; });
    box.addEventListener("input", function () {
      var v = parseFloat(box.value);
      if (!isNaN(v) && v >= 0 && v <= 1) range.value = box.value;
    });
  });
})();
