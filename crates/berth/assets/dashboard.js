// berth dashboard: optional enhancements; every page works without this script.
(function () {
  "use strict";
  // Times in the reader's own zone (the page says UTC without the script).
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      t.title = t.getAttribute("datetime");
      t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
    });
  }
  localTimes(document);
  // Filters apply as soon as a choice changes.
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (s) {
      s.addEventListener("change", function () { filters.submit(); });
    });
    var button = filters.querySelector("button");
    if (button) button.hidden = true;
  }
  if (!window.EventSource) return;
  // A stack's containers: the rows as the server renders them, whenever they change.
  var rows = document.getElementById("container-rows");
  if (rows && rows.getAttribute("data-events")) {
    var cs = new EventSource(rows.getAttribute("data-events"));
    cs.addEventListener("containers", function (e) {
      rows.innerHTML = e.data;
      localTimes(rows);
      rows.setAttribute("data-updated", String(Date.now()));
    });
  }
  // A container's log: new lines as they come.
  var clog = document.getElementById("container-log");
  if (clog && clog.getAttribute("data-follow")) {
    var fnote = document.getElementById("follow-note");
    var fs = new EventSource(clog.getAttribute("data-follow"));
    if (fnote) fnote.textContent = "Following new lines live.";
    fs.addEventListener("line", function (e) {
      var atEnd = clog.scrollTop + clog.clientHeight >= clog.scrollHeight - 4;
      clog.textContent += e.data.endsWith("\n") ? e.data : e.data + "\n";
      if (atEnd) clog.scrollTop = clog.scrollHeight;
    });
    fs.addEventListener("end", function (e) {
      fs.close();
      if (fnote) fnote.textContent = "Stopped following: " + e.data + ".";
    });
  }
  // A running deploy: follow its phases and show the log and outcome when it settles.
  var log = document.getElementById("log");
  var url = log && log.getAttribute("data-events");
  if (!url) return;
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
    status.setAttribute("aria-label", "outcome: " + b[1]);
    if (note) note.textContent = "Finished: " + e.data + ". Reload for the verification details.";
  });
})();
