// berth dashboard: optional enhancements; every page works without this script.
(function () {
  "use strict";
  // Filters apply as soon as a choice changes.
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { filters.submit(); });
    });
    var button = filters.querySelector("button");
    if (button) button.hidden = true;
  }
  // A running deploy: follow its phases and show the log and outcome when it settles.
  var log = document.getElementById("log");
  var url = log && log.getAttribute("data-events");
  if (!url || !window.EventSource) return;
  var phases = document.getElementById("phases");
  var status = document.getElementById("status");
  var note = document.getElementById("live-note");
  if (note) note.textContent = "Running: following the deploy live.";
  var es = new EventSource(url);
  es.addEventListener("phase", function (e) {
    var name = e.data.split("\t")[0];
    if (name === "done") return;
    var li = document.createElement("li");
    li.textContent = name;
    phases.appendChild(li);
  });
  es.addEventListener("log", function (e) { log.textContent = e.data; });
  es.addEventListener("done", function (e) {
    es.close();
    var labels = { succeeded: ["ok", "ok"], rolled_back: ["rolled_back", "rolled back"] };
    var b = labels[e.data] || ["failed", e.data.replace("_", " ")];
    status.className = "badge " + b[0];
    status.textContent = b[1];
    if (note) note.textContent = "Finished: " + e.data + ".";
  });
})();
