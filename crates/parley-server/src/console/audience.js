// The audience pages: live segment counts (Contacts, Segments) and the import steps (preview
// of the mapping, streamed upload, progress without a reload). Plain DOM, no dependencies;
// the server checks everything again.
(function () {
  "use strict";

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (v) { return { ok: r.ok, body: v }; });
    });
  }

  function cell(tr, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  // --- live counts -----------------------------------------------------------------------
  var filter = document.querySelector("[data-live-count]");
  if (filter) {
    var countEl = document.getElementById("filter-count");
    var errorEl = document.getElementById("filter-error");
    var sampleEl = document.getElementById("filter-sample");
    var sample = parseInt(filter.getAttribute("data-sample") || "0", 10);
    var timer = null;
    var seq = 0;
    var refresh = function () {
      var mine = ++seq;
      postJson("/contacts/count", { filter: filter.value, sample: sample }).then(function (r) {
        if (mine !== seq) return;
        if (r.ok) {
          countEl.textContent = String(r.body.count);
          errorEl.hidden = true;
          errorEl.textContent = "";
          filter.removeAttribute("aria-invalid");
          if (sampleEl) {
            sampleEl.textContent = "";
            (r.body.sample || []).forEach(function (c) {
              var li = document.createElement("li");
              li.textContent = c.phone + (c.name ? " · " + c.name : "") + (c.tags ? " — " + c.tags : "");
              sampleEl.appendChild(li);
            });
          }
        } else {
          var e = r.body.error || {};
          countEl.textContent = "?";
          errorEl.hidden = false;
          errorEl.textContent = e.message || "The filter could not be counted.";
          filter.setAttribute("aria-invalid", "true");
          if (sampleEl) sampleEl.textContent = "";
        }
      }).catch(function () {
        if (mine === seq) countEl.textContent = "?";
      });
    };
    filter.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    refresh();
  }

  // Saved segments: refresh their counts every 15 s.
  var segRows = document.querySelectorAll("#segments tr[data-filter]");
  if (segRows.length) {
    var refreshSegments = function () {
      Array.prototype.forEach.call(segRows, function (tr) {
        postJson("/contacts/count", { filter: tr.getAttribute("data-filter") }).then(function (r) {
          if (r.ok) tr.querySelector('[data-role="segment-count"]').textContent = String(r.body.count);
        }).catch(function () {});
      });
    };
    setInterval(refreshSegments, 15000);
  }

  // --- import ----------------------------------------------------------------------------
  var fileInput = document.getElementById("import-file");
  if (!fileInput) return;
  var formatSel = document.getElementById("import-format");
  var encodingSel = document.getElementById("import-encoding");
  var separatorSel = document.getElementById("import-separator");
  var countrySel = document.getElementById("import-country");
  var detectedBox = document.getElementById("import-detected");
  var errorBox = document.getElementById("import-error");
  var mapStep = document.getElementById("import-step-map");
  var progressStep = document.getElementById("import-step-progress");
  var columnsBody = document.querySelector("#import-columns tbody");
  var previewBody = document.querySelector("#import-preview tbody");
  var startBtn = document.getElementById("import-start");
  var previewBytes = parseInt(fileInput.getAttribute("data-preview-bytes") || "65536", 10);
  var head = null;
  var complete = false;
  var FIELDS = ["phone", "name", "locale", "timezone", "subscription"];
  var TYPES = ["string", "integer", "float", "boolean", "date", "datetime", "list"];

  function showError(msg) {
    errorBox.hidden = !msg;
    errorBox.textContent = msg || "";
  }

  function select(options, value, role) {
    var s = document.createElement("select");
    s.setAttribute("data-role", role);
    options.forEach(function (o) {
      var opt = document.createElement("option");
      opt.value = o[0];
      opt.textContent = o[1];
      if (o[0] === value) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }

  function guessType(column) {
    var c = column.toLowerCase();
    if (/date|_at$|birthday/.test(c)) return "date";
    if (/visits|count|age|orders/.test(c)) return "integer";
    if (/price|amount|total|spent/.test(c)) return "float";
    return "string";
  }

  function buildColumns(columns) {
    columnsBody.textContent = "";
    columns.forEach(function (col) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-column", col);
      cell(tr, col);
      var lower = col.toLowerCase().trim();
      var target = FIELDS.indexOf(lower) >= 0 ? lower : (/^(mobile|msisdn|phone.?number|number)$/.test(lower) ? "phone" : "tag");
      var goes = select([["tag", "a tag"]].concat(FIELDS.map(function (f) { return [f, "field: " + f]; })).concat([["ignore", "ignore"]]), target, "target");
      goes.setAttribute("aria-label", "Where column " + col + " goes");
      var td = document.createElement("td"); td.appendChild(goes); tr.appendChild(td);
      var name = document.createElement("input");
      name.value = col.trim();
      name.setAttribute("data-role", "tag");
      name.setAttribute("aria-label", "Tag name for column " + col);
      td = document.createElement("td"); td.appendChild(name); tr.appendChild(td);
      var type = select(TYPES.map(function (t) { return [t, t]; }), guessType(col), "type");
      type.setAttribute("aria-label", "Type of column " + col);
      td = document.createElement("td"); td.appendChild(type); tr.appendChild(td);
      var sync = function () {
        var isTag = goes.value === "tag";
        name.disabled = !isTag;
        type.disabled = !isTag;
      };
      goes.addEventListener("change", function () { sync(); preview(); });
      name.addEventListener("change", preview);
      type.addEventListener("change", preview);
      sync();
      columnsBody.appendChild(tr);
    });
  }

  // How the file is read: its format, encoding, separator and the phones' default country.
  function reading() {
    return [
      "format=" + encodeURIComponent(formatSel.value),
      "encoding=" + encodeURIComponent(encodingSel.value),
      "separator=" + encodeURIComponent(separatorSel.value),
      "country=" + encodeURIComponent(countrySel.value)
    ];
  }

  function workbook() { return formatSel.value === "xlsx"; }

  function mapping() {
    var params = reading();
    if (formatSel.value === "ndjson") return params;
    Array.prototype.forEach.call(columnsBody.querySelectorAll("tr[data-column]"), function (tr) {
      var col = tr.getAttribute("data-column");
      var target = tr.querySelector('[data-role="target"]').value;
      var tag = tr.querySelector('[data-role="tag"]').value.trim();
      var type = tr.querySelector('[data-role="type"]').value;
      var m;
      if (target === "ignore") m = col + "::string";
      else if (target === "tag") m = col + ":" + tag + ":" + type;
      else m = col + ":" + target + ":string";
      params.push("map=" + encodeURIComponent(m));
    });
    return params;
  }

  function renderPreview(rows) {
    previewBody.textContent = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      cell(tr, r.line);
      if (r.error) {
        tr.className = "rejected";
        cell(tr, ""); cell(tr, ""); cell(tr, "");
        cell(tr, r.error);
      } else {
        var c = r.contact;
        cell(tr, c.phone);
        cell(tr, c.name || "");
        cell(tr, (c.tags || []).map(function (t) { return t.name + " = " + t.value + " (" + t.type + ")"; }).join(", "));
        cell(tr, "");
      }
      previewBody.appendChild(tr);
    });
  }

  // Says how the preview read the file; "detected" where the page left it to Parley.
  function showReading(r) {
    if (!r) { detectedBox.hidden = true; return; }
    var parts = [];
    if (r.sheet) parts.push("sheet “" + r.sheet + "” (the first)");
    if (r.format !== "xlsx" && r.encoding) parts.push("encoding " + r.encoding + (encodingSel.value === "auto" ? " (detected)" : ""));
    if (r.format === "csv" && r.separator) parts.push("separator " + r.separator + (separatorSel.value === "auto" ? " (detected)" : ""));
    if (r.country) parts.push("local phone numbers from " + r.country);
    detectedBox.textContent = "Read as: " + parts.join(", ") + ".";
    detectedBox.setAttribute("data-encoding", r.encoding || "");
    detectedBox.setAttribute("data-separator", r.separator || "");
    detectedBox.setAttribute("data-sheet", r.sheet || "");
    detectedBox.hidden = parts.length === 0;
  }

  // Answers can come back out of order (each control change asks again): only the latest
  // request's rows are shown, so an older answer never overwrites a newer one.
  var previewSeq = 0;
  function preview(first) {
    if (!head) return Promise.resolve();
    var seq = ++previewSeq;
    var params = first === true ? reading() : mapping();
    if (complete) params.push("complete=1");
    var url = workbook() ? "/import/preview/workbook?" : "/import/preview?";
    return fetch(url + params.join("&"), {
      method: "POST", credentials: "same-origin", body: head
    }).then(function (r) {
      return r.json().then(function (v) {
        // A first reading still builds the columns; any other stale answer is dropped.
        if (seq !== previewSeq && !(first === true && r.ok)) return;
        if (!r.ok) { showError((v.error && v.error.message) || "The preview failed."); return; }
        showError("");
        showReading(v.read_as);
        if (first === true) {
          buildColumns(v.columns || []);
          // The first answer used no mapping; read the rows again with the guessed one.
          return preview();
        }
        renderPreview(v.rows || []);
      });
    }).catch(function (e) { if (seq === previewSeq) showError("The preview failed: " + e); });
  }

  function load() {
    var f = fileInput.files && fileInput.files[0];
    if (!f) return;
    if (this === fileInput) {
      if (/\.(ndjson|jsonl)$/i.test(f.name)) formatSel.value = "ndjson";
      else if (/\.xlsx$/i.test(f.name)) formatSel.value = "xlsx";
      else if (/\.(csv|tsv|txt)$/i.test(f.name)) formatSel.value = "csv";
    }
    // A workbook is read whole; a text file by its head.
    var whole = workbook();
    complete = whole || f.size <= previewBytes;
    document.getElementById("import-text-reading").hidden = whole;
    (whole ? f : f.slice(0, previewBytes)).arrayBuffer().then(function (buf) {
      head = buf;
      mapStep.hidden = false;
      document.getElementById("import-columns").hidden = formatSel.value === "ndjson";
      return preview(true);
    });
  }
  fileInput.addEventListener("change", load);
  formatSel.addEventListener("change", load);
  // Another encoding or separator can change the columns: read the header again.
  [encodingSel, separatorSel].forEach(function (s) {
    s.addEventListener("change", function () { if (head) preview(true); });
  });
  countrySel.addEventListener("change", function () { if (head) preview(); });

  function contentType() {
    if (workbook()) return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    return formatSel.value === "csv" ? "text/csv" : "application/x-ndjson";
  }

  function setText(id, v) { document.getElementById(id).textContent = String(v); }

  function poll(id) {
    fetch("/import/" + encodeURIComponent(id) + "/progress", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.error) { setTimeout(function () { poll(id); }, 1000); return; }
        setText("import-read", j.rows_read);
        setText("import-created", j.created);
        setText("import-updated", j.updated);
        setText("import-rejected", j.rejected);
        var state = document.getElementById("import-state");
        state.textContent = j.state;
        state.className = "badge s-" + j.state;
        if (j.state === "running") {
          setTimeout(function () { poll(id); }, 500);
          return;
        }
        var fail = document.getElementById("import-failure");
        fail.hidden = !j.error;
        fail.textContent = j.error || "";
        // Parley stopped (or the upload broke off): the same file resumes it.
        document.getElementById("import-resume-step").hidden = j.state !== "interrupted";
        if (j.state === "interrupted") { return; }
        if (j.rejected > 0) {
          var link = document.getElementById("import-rejected-link");
          link.href = "/import/" + encodeURIComponent(id) + "/rejected.csv";
          document.getElementById("import-links").hidden = false;
        }
        document.getElementById("import-done-links").hidden = false;
      })
      .catch(function () { setTimeout(function () { poll(id); }, 1000); });
  }

  document.getElementById("import-resume").addEventListener("click", function () {
    var f = fileInput.files && fileInput.files[0];
    var id = progressStep.getAttribute("data-job");
    if (!f || !id) { showError("Choose the same file again first."); return; }
    var btn = this;
    btn.disabled = true;
    fetch("/import/" + encodeURIComponent(id) + "/resume", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": contentType() },
      body: f
    }).then(function (r) {
      return r.json().then(function (v) {
        btn.disabled = false;
        if (!r.ok) {
          var fail = document.getElementById("import-failure");
          fail.hidden = false;
          fail.textContent = (v.error && v.error.message) || "The import could not be resumed.";
          return;
        }
        document.getElementById("import-resume-step").hidden = true;
        poll(id);
      });
    }).catch(function (e) {
      btn.disabled = false;
      showError("The upload failed: " + e);
    });
  });

  startBtn.addEventListener("click", function () {
    var f = fileInput.files && fileInput.files[0];
    if (!f) { showError("Choose a file first."); return; }
    startBtn.disabled = true;
    fetch("/import/upload?" + mapping().join("&"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": contentType() },
      body: f
    }).then(function (r) {
      return r.json().then(function (v) {
        if (!r.ok) {
          startBtn.disabled = false;
          showError((v.error && v.error.message) || "The import could not start.");
          return;
        }
        progressStep.hidden = false;
        progressStep.setAttribute("data-job", v.job_id);
        poll(v.job_id);
      });
    }).catch(function (e) {
      startBtn.disabled = false;
      showError("The upload failed: " + e);
    });
  });
})();
