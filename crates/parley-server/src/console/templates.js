// Live preview of the template form as a WhatsApp bubble, and the media header upload.
// Plain DOM, no dependencies; the server re-checks everything on submit.
(function () {
  "use strict";
  var form = document.getElementById("template-form");
  if (!form) return;
  var preview = document.getElementById("preview");
  var buttonsBox = document.querySelector(".wa-buttons");

  function val(name) {
    var el = form.elements[name];
    return el ? el.value : "";
  }

  // Replace {{1}} / {{name}} with the examples, in order of first appearance.
  function fill(text, examples) {
    var order = [];
    return text.replace(/\{\{\s*([a-z0-9_]+)\s*\}\}/g, function (whole, key) {
      var i = order.indexOf(key);
      if (i < 0) { order.push(key); i = order.length - 1; }
      var ex = examples[i];
      return ex ? ex : whole;
    });
  }

  function setText(part, text) {
    var el = preview.querySelector('[data-part="' + part + '"]');
    el.textContent = text;
    el.style.display = text ? "" : "none";
  }

  function render() {
    var auth = val("category") === "AUTHENTICATION";
    var format = val("header_format");
    var header = preview.querySelector('[data-part="header"]');
    header.textContent = "";
    header.style.display = "";
    if (format === "TEXT") {
      var strong = document.createElement("strong");
      strong.textContent = fill(val("header_text"), [val("header_example")]);
      header.appendChild(strong);
    } else if (format === "IMAGE" || format === "VIDEO" || format === "DOCUMENT" || format === "LOCATION") {
      var media = document.createElement("div");
      media.className = "wa-media";
      media.textContent = { IMAGE: "🖼 Image", VIDEO: "▶ Video", DOCUMENT: "📄 Document", LOCATION: "📍 Location" }[format];
      header.appendChild(media);
    } else {
      header.style.display = "none";
    }
    var body = val("body");
    if (auth && !body.trim()) {
      body = "123456 is your verification code. For your security, do not share this code.";
    }
    setText("body", fill(body, val("body_examples").split("|").map(function (s) { return s.trim(); })));
    var footer = val("footer");
    if (auth && /^\d+$/.test(footer.trim())) footer = "This code expires in " + footer.trim() + " minutes.";
    setText("footer", footer);
    buttonsBox.textContent = "";
    [1, 2, 3].forEach(function (n) {
      var type = val("button" + n + "_type");
      if (!type || type === "NONE") return;
      var label = val("button" + n + "_text");
      if (type === "COPY_CODE") label = "Copy offer code";
      if (type === "OTP" && !label) label = "Copy code";
      var b = document.createElement("div");
      b.className = "wa-button";
      b.textContent = label;
      buttonsBox.appendChild(b);
    });
  }

  form.addEventListener("input", render);
  form.addEventListener("change", render);
  render();

  var file = document.getElementById("header-file");
  var status = document.getElementById("upload-status");
  if (file) {
    file.addEventListener("change", function () {
      var f = file.files && file.files[0];
      if (!f) return;
      status.textContent = "Uploading " + f.name + " to Meta…";
      fetch("/templates/uploads?file_name=" + encodeURIComponent(f.name), {
        method: "POST",
        headers: { "Content-Type": f.type || "application/octet-stream" },
        body: f,
        credentials: "same-origin"
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, body: j }; });
      }).then(function (res) {
        if (res.ok) {
          document.getElementById("header-handle").value = res.body.handle;
          status.textContent = "Uploaded: Meta's example handle is set.";
        } else {
          status.textContent = (res.body.error && res.body.error.message) || "The upload failed.";
        }
      }).catch(function () {
        status.textContent = "The upload failed; try again.";
      });
    });
  }
})();
