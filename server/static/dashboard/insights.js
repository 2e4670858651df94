/* Lovelace dashboard: the plain / length-controlled switch of the leaderboard table.
 *
 * The length-controlled table is rendered in its own section (it reads well there without this
 * script). Here it moves next to the plain table, with the switch above both, and the switch shows
 * one of them. Nothing here writes HTML: elements are moved, never built from text.
 */
(function () {
  "use strict";

  function setup() {
    const plain = document.getElementById("leaderboard-table");
    const toggle = document.getElementById("leaderboard-toggle");
    const styled = document.getElementById("leaderboard-style");
    if (!toggle || !styled) return;
    if (plain) {
      // Beside the plain table: the switch above it, the other table after it (hidden until asked).
      plain.before(toggle);
      plain.after(styled);
      styled.hidden = true;
      styled.classList.add("ins-moved");
    }
    toggle.addEventListener("change", function (event) {
      const lengthControlled = event.target.value === "length";
      if (plain) plain.hidden = lengthControlled;
      styled.hidden = !lengthControlled;
      toggle.dataset.view = lengthControlled ? "length" : "plain";
    });
    toggle.dataset.view = "plain";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
