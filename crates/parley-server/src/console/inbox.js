// The inbox: the conversation list and one thread, kept current by one server-sent event
// stream (`/inbox/events`: the contact ids whose conversation changed, on any Parley node);
// on an event the page reloads only its HTML fragment (`/inbox/list`, `/inbox/{contact}/live`),
// at most one request in flight and one queued. No polling. The thread page also sends the
// reply box's text, file, reaction or template, marks the thread read when it is opened (and
// when a message arrives while it is shown), fires Meta's typing indicator once per burst of
// typing, and assigns the conversation.
// Plain DOM, no dependencies; the server checks everything again.
(function () {
  "use strict";

  function send(url, body, contentType) {
    var opts = { method: "POST", credentials: "same-origin", headers: {} };
    if (contentType) {
      opts.headers["Content-Type"] = contentType;
      opts.body = body;
    } else {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    return fetch(url, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) { return { ok: r.ok, status: r.status, body: j }; });
    }, function () { return { ok: false, status: 0, body: {} }; });
  }

  function errorText(res) {
    return (res.body && res.body.error && res.body.error.message) || "That did not work (" + res.status + ").";
  }

  // A fragment reloader: one fetch at a time; changes during a fetch cause one more.
  function reloader(url, apply) {
    var busy = false, again = false;
    function run() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(url(), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) apply(html); })
        .catch(function () {})
        .finally(function () {
          busy = false;
          if (again) { again = false; run(); }
        });
    }
    return run;
  }

  // Live updates: `onChange(ids)` for every event (`ids` is null for "everything").
  function live(root, onChange) {
    if (!window.EventSource) { showLiveNote(); return; }
    var events = new EventSource("/inbox/events");
    events.addEventListener("open", function () { root.dataset.live = "stream"; });
    events.addEventListener("changed", function (e) {
      var data = (e.data || "").trim();
      onChange(data === "*" || data === "" ? null : data.split(/\s+/));
    });
    events.addEventListener("error", function () {
      // The browser reconnects a dropped stream by itself; a refused one (429) is closed.
      if (events.readyState === EventSource.CLOSED) { root.dataset.live = "closed"; showLiveNote(); }
    });
  }
  function showLiveNote() {
    var note = document.getElementById("live-note");
    if (note) note.hidden = false;
  }

  // ---- The list ---------------------------------------------------------------------------
  var inbox = document.getElementById("inbox");
  if (inbox) {
    var list = document.getElementById("conversations");
    var reloadList = reloader(function () {
      var p = new URLSearchParams();
      if (inbox.dataset.filter) p.set("filter", inbox.dataset.filter);
      if (inbox.dataset.q) p.set("q", inbox.dataset.q);
      if (inbox.dataset.after) p.set("after", inbox.dataset.after);
      return "/inbox/list?" + p.toString();
    }, function (html) { list.innerHTML = html; });
    live(inbox, function () { reloadList(); });
  }

  // ---- One thread -------------------------------------------------------------------------
  var conv = document.getElementById("conversation");
  if (!conv) return;
  var contact = conv.dataset.contact;
  var base = "/inbox/" + encodeURIComponent(contact);
  var canReply = conv.dataset.canReply === "yes";
  var me = conv.dataset.me;
  var liveBox = document.getElementById("live");
  var picker = document.getElementById("reaction-picker");
  var replyTo = null;
  var reactTo = null;
  function hidePicker() { if (picker) picker.hidden = true; reactTo = null; }

  function facts() { return document.getElementById("conversation-facts"); }

  // Marks the thread read at Meta when it has unread messages and the page is shown.
  var reading = false;
  function markRead() {
    var f = facts();
    if (!canReply || reading || !f || Number(f.dataset.unread || "0") === 0 || document.hidden) return;
    reading = true;
    send(base + "/read").finally(function () { reading = false; });
  }
  document.addEventListener("visibilitychange", markRead);

  // The window closes without any event: the thread reloads itself then.
  var closing = null;
  function sync() {
    var f = facts();
    if (!f) return;
    var open = f.dataset.window === "open";
    clearTimeout(closing);
    var left = Number(f.dataset.closesIn || "0");
    if (open && left > 0 && left < 2000000) closing = setTimeout(function () { reloadThread(); }, left * 1000 + 1000);
    var free = document.getElementById("free-form");
    var tpl = document.getElementById("template-form");
    if (free) free.hidden = !open;
    if (tpl) tpl.hidden = open;
    if (!open) hidePicker();
    var assignee = f.dataset.assignee || "";
    var sel = document.getElementById("assign-select");
    if (sel && document.activeElement !== sel) sel.value = assignee;
    var mine = assignee === me;
    var take = document.getElementById("assign-me");
    var give = document.getElementById("unassign-me");
    if (take) take.hidden = mine;
    if (give) give.hidden = !mine;
    markRead();
  }

  var reloadThread = reloader(function () {
    var before = conv.dataset.before;
    return base + "/live" + (before ? "?before=" + encodeURIComponent(before) : "");
  }, function (html) { liveBox.innerHTML = html; sync(); });
  live(conv, function (ids) {
    if (ids === null || ids.indexOf(contact) >= 0) reloadThread();
  });
  sync();

  // Assignment.
  var assignError = document.getElementById("assign-error");
  function assign(userId) {
    assignError.textContent = "";
    send(base + "/assign", { user_id: userId }).then(function (res) {
      if (!res.ok) { assignError.textContent = errorText(res); return; }
      reloadThread();
    });
  }
  var sel = document.getElementById("assign-select");
  if (sel) sel.addEventListener("change", function () { assign(sel.value || null); });
  var take = document.getElementById("assign-me");
  if (take) take.addEventListener("click", function () { assign(me); });
  var give = document.getElementById("unassign-me");
  if (give) give.addEventListener("click", function () { assign(null); });

  if (!canReply) return;

  var replyError = document.getElementById("reply-error");
  var replyNotice = document.getElementById("reply-notice");
  function done(res, what) {
    if (!res.ok) { replyError.textContent = errorText(res); replyNotice.hidden = true; return false; }
    replyError.textContent = "";
    replyNotice.textContent = what + " queued.";
    replyNotice.hidden = false;
    reloadThread();
    return true;
  }

  // Typing: one call when typing starts; another only after 20 s (Meta shows it for 25 s or
  // until the reply arrives).
  var text = document.getElementById("reply-text");
  var lastTyping = 0;
  text.addEventListener("input", function () {
    var now = Date.now();
    if (text.value.trim() === "" || now - lastTyping < 20000) return;
    lastTyping = now;
    send(base + "/typing");
  });

  // Quoted replies.
  var replyingTo = document.getElementById("replying-to");
  function setReplyTo(wamid) {
    replyTo = wamid;
    replyingTo.hidden = !wamid;
    if (wamid) {
      var msg = liveBox.querySelector('[data-wamid="' + CSS.escape(wamid) + '"] .text');
      replyingTo.querySelector("span").textContent = msg ? "“" + msg.textContent.slice(0, 60) + "”" : "a message";
      text.focus();
    }
  }
  document.getElementById("cancel-reply-to").addEventListener("click", function () { setReplyTo(null); });

  // Reactions.
  liveBox.addEventListener("click", function (e) {
    var r = e.target.closest("[data-react]");
    if (r) {
      reactTo = r.dataset.react;
      picker.hidden = false;
      picker.querySelector("button").focus();
      return;
    }
    var q = e.target.closest("[data-reply-to]");
    if (q) setReplyTo(q.dataset.replyTo);
  });
  picker.addEventListener("click", function (e) {
    var b = e.target.closest("[data-emoji]");
    if (!b || !reactTo) return;
    var target = reactTo;
    hidePicker();
    send(base + "/reply", { reaction: { message_id: target, emoji: b.dataset.emoji } }).then(function (res) {
      done(res, "Reaction");
    });
  });

  // Text or a file.
  var free = document.getElementById("free-form");
  var file = document.getElementById("reply-file");
  var caption = document.getElementById("reply-caption");
  free.addEventListener("submit", function (e) {
    e.preventDefault();
    var button = document.getElementById("send-reply");
    var f = file.files && file.files[0];
    var req;
    if (f) {
      // Meta's kinds: a WebP image goes as a sticker; anything not image, video or audio as
      // a document.
      var type = f.type === "image/webp" ? "sticker" : /^image\//.test(f.type) ? "image"
        : /^video\//.test(f.type) ? "video" : /^audio\//.test(f.type) ? "audio" : "document";
      var p = new URLSearchParams({ type: type, mime_type: f.type || "application/octet-stream" });
      var cap = caption.value.trim() || text.value.trim();
      if (cap && type !== "audio" && type !== "sticker") p.set("caption", cap);
      if (type === "document") p.set("filename", f.name);
      if (replyTo) p.set("reply_to", replyTo);
      req = send(base + "/media?" + p.toString(), f, f.type || "application/octet-stream");
    } else {
      if (text.value.trim() === "") { replyError.textContent = "Write a message or choose a file."; return; }
      var body = { text: text.value };
      if (replyTo) body.reply_to = replyTo;
      req = send(base + "/reply", body);
    }
    button.disabled = true;
    req.then(function (res) {
      button.disabled = false;
      if (done(res, f ? "File" : "Message")) {
        text.value = ""; caption.value = ""; file.value = ""; setReplyTo(null); lastTyping = 0;
      }
    });
  });

  // Templates (the window is closed): the chosen template's variables only.
  var templates = JSON.parse(document.getElementById("templates-data").textContent || "[]");
  var tplForm = document.getElementById("template-form");
  var tplSelect = document.getElementById("template-select");
  var tplVars = document.getElementById("template-variables");
  tplSelect.addEventListener("change", function () {
    tplVars.textContent = "";
    var t = templates[Number(tplSelect.value)];
    if (tplSelect.value === "" || !t) return;
    t.variables.forEach(function (v) {
      var label = document.createElement("label");
      label.textContent = "{{" + v.key + "}} · " + v.where + " · " + v.kind;
      var input = document.createElement("input");
      input.dataset.key = v.key;
      input.name = "var-" + v.key;
      input.required = true;
      label.appendChild(input);
      tplVars.appendChild(label);
    });
  });
  tplForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var t = templates[Number(tplSelect.value)];
    if (tplSelect.value === "" || !t) { replyError.textContent = "Choose a template."; return; }
    var vars = {};
    tplVars.querySelectorAll("input[data-key]").forEach(function (el) { vars[el.dataset.key] = el.value; });
    var button = document.getElementById("send-template");
    button.disabled = true;
    send(base + "/reply", { template: { name: t.name, language: t.language, variables: vars } }).then(function (res) {
      button.disabled = false;
      if (done(res, "Template")) { tplSelect.value = ""; tplVars.textContent = ""; }
    });
  });
})();
