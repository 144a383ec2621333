// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", function () {
  // Move focus to the error summary so screen readers announce it (GOV.UK pattern).
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }
  // Buttons marked data-confirm ask before a change that sends messages or cannot be undone.
  document.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
});
