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
  /* Keep the slider and the number box in step; htmx sends the number box's value. */
  var range = document.getElementById("threshold-range");
  var box = document.getElementById("threshold");
  if (!range || !box) return;
  range.addEventListener("input", function () { box.value = range.value; });
  box.addEventListener("input", function () {
    var v = parseFloat(box.value);
    if (!isNaN(v) && v >= 0 && v <= 1) range.value = box.value;
  });
})();
