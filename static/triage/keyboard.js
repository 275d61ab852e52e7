/* Keyboard shortcuts for the agent dashboard. Press ? on any page for the list.
 *
 * Shortcuts act on elements marked with data-shortcut="<name>", looked up at key-press time so that
 * panels htmx has swapped in are found too. Keys are ignored while typing in a field or with a
 * modifier held, so they never eat text or browser shortcuts.
 */
(function () {
  "use strict";

  function isTyping(element) {
    return !!element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName));
  }

  function find(name) {
    return document.querySelector('[data-shortcut="' + name + '"]');
  }

  function activate(name) {
    var element = find(name);
    if (!element || element.disabled) return false;
    if (element.tagName === "A") {
      window.location.assign(element.href);
    } else {
      element.click();
    }
    return true;
  }

  function toggleHelp() {
    var dialog = document.getElementById("shortcuts-help");
    if (!dialog) return false;
    if (dialog.open) dialog.close(); else dialog.showModal();
    return true;
  }

  /* Queue page: j/k move a highlighted row, o or Enter opens it. */
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-ticket-row]"));
  }

  function moveSelection(delta) {
    var all = rows();
    if (!all.length) return false;
    var current = all.findIndex(function (row) { return row.classList.contains("selected"); });
    var next = current === -1 ? (delta > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, current + delta));
    all.forEach(function (row) { row.classList.remove("selected"); row.removeAttribute("aria-selected"); });
    all[next].classList.add("selected");
    all[next].setAttribute("aria-selected", "true");
    all[next].scrollIntoView({ block: "nearest" });
    return true;
  }

  function openSelection() {
    var row = document.querySelector("[data-ticket-row].selected") || rows()[0];
    var link = row && row.querySelector("[data-ticket-link]");
    if (!link) return false;
    window.location.assign(link.href);
    return true;
  }

  var onQueuePage = function () { return !!document.querySelector("[data-queue-rows]"); };

  var actions = {
    "?": toggleHelp,
    "a": function () { return activate("accept"); },
    "A": function () { return activate("accept-next"); },
    "1": function () { return activate("alt-1"); },
    "2": function () { return activate("alt-2"); },
    "3": function () { return activate("alt-3"); },
    "c": function () {
      var picker = find("correct-picker");
      if (!picker) return false;
      picker.focus();
      return true;
    },
    "m": function () { return activate("take"); },
    "j": function () { return onQueuePage() ? moveSelection(1) : activate("next"); },
    "n": function () { return activate("next"); },
    "k": function () { return onQueuePage() ? moveSelection(-1) : activate("previous"); },
    "p": function () { return activate("previous"); },
    "o": function () { return onQueuePage() && openSelection(); },
    "Enter": function () { return onQueuePage() && openSelection(); },
    "u": function () {
      if (activate("queue")) return true;
      var brand = document.querySelector(".brand");
      if (brand) window.location.assign(brand.href);
      return !!brand;
    },
    "/": function () {
      var search = find("search");
      if (!search) return false;
      search.focus();
      search.select();
      return true;
    },
  };

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    var target = event.target;
    if (event.key === "Escape") {
      if (isTyping(target)) target.blur();
      return;
    }
    // In the correct picker, Enter saves the team chosen by typing its first letters.
    if (event.key === "Enter" && target.matches && target.matches('[data-shortcut="correct-picker"]')) {
      event.preventDefault();
      if (target.value) target.form.requestSubmit();
      return;
    }
    if (isTyping(target)) return;
    // A focused button or link already does something on Enter.
    if (event.key === "Enter" && target.closest && target.closest("a, button")) return;
    var action = actions[event.key];
    if (action && action()) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest('[data-shortcut="help"]')) toggleHelp();
  });

  /* A second press of "a" while the first POST is on its way must not store a second label. */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if ((form.method || "").toLowerCase() !== "post" || form.hasAttribute("hx-post")) return;
    if (form.dataset.submitting) {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
  });

  /* Coming back with the browser's Back button restores the page from cache, flags included. */
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitting]").forEach(function (form) { delete form.dataset.submitting; });
  });
})();
