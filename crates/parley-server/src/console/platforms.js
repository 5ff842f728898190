/* Parley console: Log in with Facebook (Meta's Embedded Signup v4) and the live platform list.
   The dialog's code lives 30 s: as soon as both the FB.login callback and the
   WA_EMBEDDED_SIGNUP message have arrived (either order), both go to Parley in one POST. */
(function () {
  'use strict';
  var button = document.querySelector('[data-fb-login]');
  var buttons = Array.prototype.slice.call(document.querySelectorAll('[data-fb-login]'));
  var statusBox = document.getElementById('signup-status');
  var list = document.getElementById('platform-list');
  var actionStatus = document.getElementById('action-status');

  var STEP_LABELS = {
    exchange_code: 'Exchange the sign-up code',
    debug_token: 'Check the granted permissions',
    subscribe_app: "Subscribe to the account's webhooks",
    read_business: 'Read the business portfolio',
    find_number: 'Find the phone number',
    verify_number: 'Verify the phone number',
    register_phone: 'Register the phone number',
    read_waba: 'Read the WhatsApp Business Account',
    read_phone_numbers: 'Read the phone numbers',
    read_profile: 'Read the business profile'
  };
  var STEPS = Object.keys(STEP_LABELS);
  var STATUS_LABELS = {
    setting_up: 'Setting up', pending_review: 'Pending review', active: 'Active',
    rejected: 'Rejected', restricted: 'Restricted', disconnected: 'Disconnected'
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        return { ok: r.ok, status: r.status, body: b };
      });
    });
  }

  /* ---- the live list ---------------------------------------------------------------- */
  var lastHtml = null;
  function refreshList() {
    if (!list) { return Promise.resolve(); }
    return fetch(list.getAttribute('data-list-url'), { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null && html !== lastHtml) {
          lastHtml = html;
          list.innerHTML = html;
        }
      })
      .catch(function () { /* offline for a moment; the next tick tries again */ });
  }
  if (list) {
    lastHtml = list.innerHTML;
    setInterval(refreshList, 2000);
    list.addEventListener('click', function (ev) {
      var b = ev.target.closest && ev.target.closest('[data-action]');
      if (!b) { return; }
      var id = b.getAttribute('data-id');
      var action = b.getAttribute('data-action');
      if (action === 'disconnect') { confirmDisconnect(id, b.getAttribute('data-name') || id); return; }
      var card = b.closest('article');
      var field = function (name) {
        var input = card && card.querySelector('[name=' + name + ']');
        return input ? input.value.trim() : '';
      };
      if (action === 'request_code') {
        runAction(id, action, { code_method: b.getAttribute('data-method') || 'SMS' });
        return;
      }
      if (action === 'verify_code') { runAction(id, action, { code: field('code') }); return; }
      if (action === 'add_number') {
        runAction(id, action, { cc: field('cc'), phone_number: field('phone_number'), verified_name: field('verified_name') });
        return;
      }
      runAction(id, action, {});
    });
  }

  function say(text, isError) {
    if (!actionStatus) { return; }
    actionStatus.textContent = text;
    actionStatus.className = isError ? 'error' : 'hint';
  }

  function runAction(id, action, body) {
    var verbs = {
      refresh: 'Refreshing from Meta…', retry: 'Retrying the failed step…', disconnect: 'Disconnecting…',
      request_code: 'Asking Meta to send the code…', verify_code: 'Verifying the number…', add_number: 'Adding the number…',
      marketing_messages_on: 'Asking Meta whether the account is onboarded to the Marketing Messages API…',
      marketing_messages_off: 'Sending marketing through the Cloud API…'
    };
    say(verbs[action] || '…', false);
    return post('/settings/platforms/' + encodeURIComponent(id) + '/' + action, body).then(function (r) {
      if (r.ok) {
        var p = r.body.platform || r.body;
        if (p.message && !p.status) { say(p.message, false); return refreshList(); }
        var next = p.next_step ? ': ' + p.next_step.message : (p.status_reason ? ': ' + p.status_reason : '');
        say((STATUS_LABELS[p.status] || p.status || 'Done') + next, false);
      } else {
        say((r.body.error && r.body.error.message) || ('Failed (HTTP ' + r.status + ')'), true);
      }
      return refreshList();
    });
  }

  function confirmDisconnect(id, name) {
    var dialog = document.getElementById('disconnect-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') {
      if (window.confirm('Disconnect ' + name + '? Its numbers stay registered.')) { runAction(id, 'disconnect', { deregister: false }); }
      return;
    }
    dialog.querySelector('[data-role=name]').textContent = name;
    var box = dialog.querySelector('input[name=deregister]');
    box.checked = false;
    dialog.onclose = function () {
      if (dialog.returnValue === 'confirm') { runAction(id, 'disconnect', { deregister: box.checked }); }
    };
    dialog.returnValue = '';
    dialog.showModal();
  }

  /* ---- Embedded Signup -------------------------------------------------------------- */
  if (!button) { return; }
  /* v4: the Login for Business configuration picks the version; the extras stay minimal
     (META_2026.md §1.1). A WhatsApp Business app number adds only the coexistence flow. */
  function extrasFor(flow) {
    if (flow === 'business_app') { return { setup: {}, featureType: 'whatsapp_business_app_onboarding' }; }
    return { setup: {} };
  }
  var cfg = {
    appId: button.getAttribute('data-app-id'),
    configId: button.getAttribute('data-config-id'),
    version: button.getAttribute('data-version'),
    sdkUrl: button.getAttribute('data-sdk-url'),
    origin: button.getAttribute('data-message-origin')
  };

  /* Meta's messages come from facebook.com (any subdomain, over https); the sandbox's from
     its exact origin. A look-alike domain such as evilfacebook.com is refused. */
  function originAllowed(origin) {
    if (cfg.origin.indexOf('://') >= 0) { return origin === cfg.origin; }
    var url;
    try { url = new URL(origin); } catch (e) { return false; }
    return url.protocol === 'https:' &&
      (url.hostname === cfg.origin || url.hostname.slice(-(cfg.origin.length + 1)) === '.' + cfg.origin);
  }

  function showSteps(title, steps, failedStep, error) {
    if (!statusBox) { return; }
    statusBox.innerHTML = '';
    statusBox.appendChild(el('p', 'signup-title', title));
    var ol = el('ol', 'steps');
    var byName = {};
    (steps || []).forEach(function (s) { byName[s.step] = s; });
    STEPS.forEach(function (name) {
      var s = byName[name];
      var state = s ? s.state : (failedStep || error ? 'not-run' : 'running');
      var li = el('li', 'step-' + state, STEP_LABELS[name]);
      li.setAttribute('data-step', name);
      if (s && s.error_message) { li.appendChild(el('span', 'hint', ' — ' + s.error_message)); }
      ol.appendChild(li);
    });
    statusBox.appendChild(ol);
    if (error) { statusBox.appendChild(el('p', 'error', error)); }
  }

  function message(text, isError) {
    if (!statusBox) { return; }
    statusBox.innerHTML = '';
    statusBox.appendChild(el('p', isError ? 'error' : 'hint', text));
  }

  var pending = null;

  function send(p) {
    if (p.sent) { return; }
    p.sent = true;
    var finished = p.event && String(p.event.event || '').indexOf('FINISH') === 0;
    if (finished && p.code) { showSteps('Connecting your WhatsApp Business Account…', [], null, null); }
    post('/settings/platforms/whatsapp/signup', { code: p.code || null, event: p.event || {} }).then(function (r) {
      var b = r.body || {};
      if (r.ok) {
        var label = b.next_step ? b.next_step.message : (STATUS_LABELS[b.status] || b.status);
        showSteps('Connected ' + (b.waba_name || b.waba_id) + ': ' + label, b.onboarding && b.onboarding.steps, null, null);
      } else if (b.onboarding) {
        showSteps('Sign-up stopped', b.onboarding.steps, b.onboarding.failed_step, b.error && b.error.message);
      } else {
        message((b.error && b.error.message) || ('Sign-up failed (HTTP ' + r.status + ')'), true);
      }
      enable(true);
      pending = null;
      return refreshList();
    }, function () {
      message('Parley could not be reached; check your connection and try again.', true);
      enable(true);
      pending = null;
    });
  }

  function maybeSend() {
    var p = pending;
    if (!p || p.sent) { return; }
    var kind = p.event ? String(p.event.event || '') : '';
    if (kind.indexOf('FINISH') === 0 && p.code) { send(p); return; }
    if (p.event && kind.indexOf('FINISH') !== 0) { send(p); return; }
    if (p.code === null) {
      /* The callback came without a code: give the CANCEL message a moment to arrive. */
      setTimeout(function () { send(p); }, 1500);
    }
  }

  window.addEventListener('message', function (event) {
    if (!originAllowed(event.origin)) { return; }
    var data;
    try { data = typeof event.data === 'string' ? JSON.parse(event.data) : null; } catch (e) { return; }
    if (!data || data.type !== 'WA_EMBEDDED_SIGNUP' || !pending) { return; }
    pending.event = data;
    maybeSend();
  });

  function fbLoginCallback(response) {
    if (!pending) { return; }
    pending.code = response && response.authResponse ? response.authResponse.code : null;
    maybeSend();
  }

  function enable(on) { buttons.forEach(function (b) { b.disabled = !on; }); }

  /* Parley acts on the event it receives (FINISH, FINISH_ONLY_WABA,
     FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING, FINISH_GRANT_ONLY_API_ACCESS), not on the flow
     it asked for: Meta switches to coexistence by itself for a Business app number. */
  function launchWhatsAppSignup(flow) {
    pending = { code: undefined, event: null, sent: false };
    enable(false);
    message('Continue in the Facebook window…', false);
    window.FB.login(fbLoginCallback, {
      config_id: cfg.configId,
      response_type: 'code',
      override_default_response_type: true,
      extras: extrasFor(flow)
    });
  }

  window.fbAsyncInit = function () {
    window.FB.init({ appId: cfg.appId, autoLogAppEvents: true, xfbml: true, version: cfg.version });
    enable(true);
  };
  buttons.forEach(function (b) {
    b.addEventListener('click', function () { launchWhatsAppSignup(b.getAttribute('data-flow') || 'cloud_api'); });
  });

  var sdk = document.createElement('script');
  sdk.async = true;
  sdk.defer = true;
  sdk.crossOrigin = 'anonymous';
  sdk.src = cfg.sdkUrl;
  sdk.onerror = function () { message("Facebook's SDK could not be loaded from " + cfg.sdkUrl + '.', true); };
  document.head.appendChild(sdk);
})();
