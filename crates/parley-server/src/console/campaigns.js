// Campaigns › WhatsApp messages: the New campaign form (variable inputs from the chosen
// template, live per-variable preview and audience count, field errors next to the fields)
// and the campaign page (live progress pushed as server-sent events, polled only when the
// stream is refused; Start / Pause / Resume / Cancel).
// Plain DOM, no dependencies; the server checks everything again.
(function () {
  "use strict";

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) { return { ok: r.ok, status: r.status, body: j }; });
    });
  }

  // ---- New campaign -------------------------------------------------------------------
  var form = document.getElementById("campaign-form");
  if (form) {
    var templates = JSON.parse(document.getElementById("templates-data").textContent || "[]");
    var select = form.elements["template"];
    var box = document.getElementById("variables");
    var inputs = document.getElementById("variable-inputs");
    templates.forEach(function (t, i) {
      var o = document.createElement("option");
      o.value = String(i);
      o.textContent = t.name + " (" + t.language + ", " + t.category + ")";
      select.appendChild(o);
    });

    var current = function () { return templates[Number(select.value)] || null; };

    function variables() {
      var out = {};
      inputs.querySelectorAll("input[data-key]").forEach(function (el) { out[el.dataset.key] = el.value; });
      return out;
    }

    function renderInputs() {
      inputs.textContent = "";
      var t = current();
      box.hidden = !t || t.variables.length === 0;
      if (!t) return;
      t.variables.forEach(function (v) {
        var row = document.createElement("div");
        row.className = "variable";
        var label = document.createElement("label");
        label.textContent = "{{" + v.key + "}} · " + v.where + " · " + v.kind;
        var input = document.createElement("input");
        input.dataset.key = v.key;
        input.name = "var-" + v.key;
        input.value = v.kind === "text" && /^[a-z_][a-z0-9_]*$/.test(v.key) ? "{{" + v.key + "}}" : "";
        label.appendChild(input);
        var preview = document.createElement("p");
        preview.className = "hint preview";
        preview.dataset.previewFor = v.key;
        var err = document.createElement("p");
        err.className = "field-error";
        err.dataset.errorFor = "template.variables." + v.key;
        row.appendChild(label);
        row.appendChild(preview);
        row.appendChild(err);
        inputs.appendChild(row);
      });
      schedulePreview();
    }

    function audience() {
      return { segment_id: form.elements["segment_id"].value, filter: form.elements["filter"].value };
    }

    var timer = null;
    var seq = 0;
    function schedulePreview() {
      clearTimeout(timer);
      timer = setTimeout(runPreview, 300);
    }
    function runPreview() {
      var t = current();
      var a = audience();
      var mine = ++seq;
      post("/campaigns/whatsapp/preview", {
        variables: t ? variables() : {}, segment_id: a.segment_id, filter: a.filter
      }).then(function (res) {
        if (mine !== seq || !res.ok) return;
        var count = document.getElementById("audience-count");
        var au = res.body.audience || {};
        setError("audience.filter", "");
        setError("audience.segment_id", "");
        if (au.error) {
          count.textContent = "";
          setError(au.error.field, au.error.message);
        } else {
          count.textContent = au.count + (au.count === 1 ? " contact matches" : " contacts match") + " now.";
          document.getElementById("sample-contact").textContent = au.sample
            ? (au.sample.name ? au.sample.name + " (" + au.sample.phone + ")" : au.sample.phone)
            : "a contact without tags (the audience is empty)";
        }
        var values = res.body.values || {};
        Object.keys(values).forEach(function (key) {
          var el = inputs.querySelector('[data-preview-for="' + CSS.escape(key) + '"]');
          if (!el) return;
          var v = values[key] || {};
          el.classList.toggle("bad", !!(v.error || v.skipped));
          if (v.error) el.textContent = "⚠ " + v.error;
          else if (v.skipped) el.textContent = "Skipped for this contact: " + v.skipped.reason;
          else el.textContent = "→ " + (v.text === "" ? "(empty)" : v.text);
        });
      });
    }

    function setError(field, message) {
      var el = form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
      if (!el) return false;
      el.textContent = message;
      return true;
    }
    function clearErrors() {
      form.querySelectorAll(".field-error").forEach(function (el) { el.textContent = ""; });
      document.getElementById("form-error").hidden = true;
    }
    // The engine names fields like the API (`template.variables.first_name`, `audience.filter`);
    // an unknown field falls back to its closest parent, then to the form.
    function showError(err) {
      var field = err.field || "";
      while (field) {
        if (setError(field, err.message)) return;
        field = field.indexOf(".") > 0 ? field.slice(0, field.lastIndexOf(".")) : "";
      }
      var general = document.getElementById("form-error");
      general.textContent = err.message || "The campaign could not be created.";
      general.hidden = false;
    }

    select.addEventListener("change", renderInputs);
    inputs.addEventListener("input", schedulePreview);
    form.elements["segment_id"].addEventListener("change", schedulePreview);
    form.elements["filter"].addEventListener("input", schedulePreview);
    schedulePreview();

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      clearErrors();
      var t = current();
      var a = audience();
      var later = form.querySelector('input[name="when"]:checked').value === "later";
      var at = form.elements["scheduled_at"].value;
      var scheduled = null;
      if (later) {
        var d = at ? new Date(at) : null;
        if (!d || isNaN(d.getTime())) { setError("scheduled_at", "Give the date and time to start at."); return; }
        scheduled = d.toISOString();
      }
      var button = document.getElementById("create-campaign");
      button.disabled = true;
      post("/campaigns/whatsapp/new", {
        name: form.elements["name"].value,
        phone_number_id: form.elements["phone_number_id"].value,
        template_name: t ? t.name : "",
        template_language: t ? t.language : "",
        variables: t ? variables() : {},
        segment_id: a.segment_id,
        filter: a.filter,
        type: form.querySelector('input[name="type"]:checked').value,
        scheduled_at: scheduled,
        phones: form.elements["phones"].value,
        window_start: form.elements["window_start"].value,
        window_end: form.elements["window_end"].value,
        window_timezone: form.elements["window_timezone"].value,
        marketing_ttl_hours: form.elements["marketing_ttl_hours"].value
      }).then(function (res) {
        button.disabled = false;
        if (res.ok) {
          window.location.href = "/campaigns/whatsapp/" + res.body.id;
        } else {
          showError((res.body && res.body.error) || { message: "The campaign could not be created (" + res.status + ")." });
        }
      }, function () {
        button.disabled = false;
        showError({ message: "Parley did not answer; try again." });
      });
    });
  }

  // ---- Campaign page: live progress and actions ----------------------------------------
  var campaign = document.getElementById("campaign");
  if (campaign) {
    var id = campaign.dataset.id;
    var labels = { draft: "Draft", scheduled: "Scheduled", running: "Running", paused: "Paused", completed: "Completed", cancelled: "Cancelled" };
    var shows = {
      start: ["draft"], pause: ["running", "scheduled"], resume: ["paused"],
      cancel: ["draft", "scheduled", "running", "paused"]
    };
    var actionError = document.getElementById("action-error");

    function setState(state, reason) {
      campaign.dataset.state = state;
      var badge = document.getElementById("campaign-state");
      badge.textContent = labels[state] || state;
      badge.className = "badge c-" + state;
      document.getElementById("state-reason").textContent = reason || "";
      document.querySelectorAll("#campaign-actions button").forEach(function (b) {
        b.hidden = shows[b.dataset.action].indexOf(state) < 0;
      });
      if (state !== "draft") {
        var plan = document.getElementById("plan");
        if (plan) plan.hidden = true;
      }
    }

    function breakdown(obj, label) {
      var keys = Object.keys(obj || {});
      if (!keys.length) return "";
      return label + ": " + keys.map(function (k) { return obj[k] + " " + k.replace(/_/g, " "); }).join(", ");
    }

    function show(s) {
      var pct = s.progress_percent || 0;
      document.getElementById("progress-fill").style.width = pct + "%";
      document.querySelector("#progress .bar").setAttribute("aria-valuenow", String(pct));
      document.getElementById("progress-percent").textContent = pct + " %";
      document.querySelectorAll("[data-count]").forEach(function (el) {
        var v = s[el.dataset.count];
        el.textContent = v === undefined ? "—" : String(v);
      });
      document.getElementById("next-slot").textContent = s.waiting_for_quota && s.next_slot_at
        ? "Next messaging-limit slot frees at " + s.next_slot_at : (s.planned ? "" : "Planning the audience…");
      document.getElementById("breakdowns").textContent = [s.held_by_meta ? s.held_by_meta + " held by Meta (pacing)" : "", s.capped_by_meta ? s.capped_by_meta + " capped by Meta (per-user marketing limit)" : "", breakdown(s.failed_by_code, "Failed by error code"), breakdown(s.skipped_by_reason, "Skipped")]
        .filter(Boolean).join(" · ");
      setState(s.state, s.state_reason);
      stopped = (s.state === "completed" || s.state === "cancelled") && s.queued + s.sending + s.accepted === 0;
    }

    // Live progress: server-sent events (`/events`, pushed when any Parley node changes the
    // campaign). The browser reconnects a stream that drops; a stream the server refuses
    // (too many open, or no EventSource) falls back to polling every 1.5 s.
    var stopped = false;
    var polling = false;
    function poll() {
      polling = true;
      fetch("/campaigns/whatsapp/" + encodeURIComponent(id) + "/stats", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) { if (s) show(s); })
        .finally(function () { if (!stopped) setTimeout(poll, 1500); else polling = false; });
    }
    function live() {
      if (!window.EventSource) { campaign.dataset.live = "poll"; poll(); return; }
      var events = new EventSource("/campaigns/whatsapp/" + encodeURIComponent(id) + "/events");
      events.addEventListener("open", function () { campaign.dataset.live = "stream"; });
      events.addEventListener("progress", function (e) {
        try { show(JSON.parse(e.data)); } catch (err) { /* a torn event: the next one repairs it */ }
      });
      events.addEventListener("error", function () {
        if (events.readyState === EventSource.CLOSED) {
          campaign.dataset.live = "poll";
          if (!polling) poll();
        }
      });
    }

    document.querySelectorAll("#campaign-actions button").forEach(function (b) {
      b.addEventListener("click", function () {
        var action = b.dataset.action;
        if (action === "cancel" && !window.confirm("Cancel this campaign? Messages not yet sent will not be sent.")) return;
        actionError.hidden = true;
        b.disabled = true;
        post("/campaigns/whatsapp/" + encodeURIComponent(id) + "/" + action).then(function (res) {
          b.disabled = false;
          if (res.ok) {
            setState(res.body.state, res.body.state_reason);
            if (stopped && polling === false && campaign.dataset.live === "poll") { stopped = false; poll(); }
          } else {
            actionError.textContent = (res.body.error && res.body.error.message) || "That did not work (" + res.status + ").";
            actionError.hidden = false;
          }
        });
      });
    });
    setState(campaign.dataset.state, document.getElementById("state-reason").textContent);
    live();
  }
})();
