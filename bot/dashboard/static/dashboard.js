// mendbot's dashboard: every <time> the pages write (a moment in UTC) is shown relative to now
// ("3 min ago") with the moment in the viewer's own time zone on hover; kept fresh, and applied to rows
// the live timeline adds. No eval, no inline script: the Content-Security-Policy allows this file only.
(function () {
  "use strict";
  var UNITS = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];

  function span(seconds) {
    var left = Math.round(Math.abs(seconds));
    if (left < 60) return left + " s";
    var parts = [];
    for (var i = 0; i < UNITS.length && parts.length < 2; i++) {
      var amount = Math.floor(left / UNITS[i][1]);
      left -= amount * UNITS[i][1];
      if (amount || parts.length) parts.push(amount + " " + UNITS[i][0]);
    }
    if (parts.length === 2 && parts[1].indexOf("0 ") === 0) parts.pop();
    return parts.join(" ");
  }

  // Relative to the bot's clock (the page says what it was when it was made): the playground's moves
  // only with `wait`, so a moment it recorded can lie ahead of the viewer's wall clock.
  var offset = 0;

  function relative(moment) {
    var seconds = (moment.getTime() - (Date.now() + offset)) / 1000;
    if (Math.abs(seconds) < 5) return "just now";
    return seconds > 0 ? "in " + span(seconds) : span(seconds) + " ago";
  }

  function show(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var element = times[i];
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) continue;
      element.textContent = relative(moment);
      element.title = moment.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var now = Number(document.body.getAttribute("data-now"));
    if (now > 0) offset = now * 1000 - Date.now();
    show(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { show(event.target); });
  document.addEventListener("htmx:sseMessage", function () { show(document); });
  setInterval(function () { show(document); }, 30000);
})();
