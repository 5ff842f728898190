//! `GET /sdk.js` (also `/en_US/sdk.js`): a stand-in for Meta's JavaScript SDK, enough for
//! Embedded Signup. Loading it calls `window.fbAsyncInit()` if defined; `FB.init` records the
//! settings; `FB.login(callback, {config_id, response_type: 'code', override_default_response_type,
//! extras})` opens the sandbox's dialog in a popup (`window.open`, 600×700) at
//! `/dialog/embedded_signup?app_id&config_id&origin&extras`.
//!
//! What the page receives, as from Meta (META_API.md §1.2), the FINISH or CANCEL `message`
//! event (a JSON string, `event.origin` = the sandbox's origin) and the `FB.login` callback, in
//! random order:
//! - Finish (the Finish button, or closing the popup on the final screen):
//!   `{"data":{"phone_number_id","waba_id","business_id"},"type":"WA_EMBEDDED_SIGNUP","event":"FINISH"}`
//!   and `callback({authResponse: {code, userID, expiresIn, graphDomain, data_access_expiration_time}, status: 'connected'})`.
//! - Closed earlier: `{"data":{"current_step":"<STEP>"},"type":"WA_EMBEDDED_SIGNUP","event":"CANCEL","version":3}`
//!   and `callback({authResponse: null, status: 'unknown'})`.
//! - "Report a problem": `{"data":{"error_message","error_code","session_id","timestamp"},"type":"WA_EMBEDDED_SIGNUP","event":"CANCEL"}`
//!   and `callback({authResponse: null, status: 'unknown'})`.
//!
//! The dialog reports its screen to the SDK with an internal message
//! (`{"type":"SANDBOX_FB_STEP",…}`) and hands over the login result as `SANDBOX_FB_LOGIN`;
//! pages ignore both because their type is not `WA_EMBEDDED_SIGNUP`. When the SDK sees the
//! popup closed without a result, it sends the CANCEL (or, on the final screen, fetches the
//! result and sends the FINISH) itself, as a `message` event whose `origin` is the sandbox's.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `GET /sdk.js`.
pub(crate) async fn sdk(headers: HeaderMap) -> Response {
    // The SDK finds the sandbox from its own <script src>; the Host header is the fallback.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or("127.0.0.1");
    let script = SDK.replace("__SANDBOX_ORIGIN__", &format!("http://{host}"));
    let mut response = script.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

const SDK: &str = r#"/* Parley sandbox stand-in for Meta's JavaScript SDK (Embedded Signup only). */
(function () {
  'use strict';
  if (window.FB && window.FB.__sandbox) { return; }
  var script = document.currentScript;
  var ORIGIN = '__SANDBOX_ORIGIN__';
  try { if (script && script.src) { ORIGIN = new URL(script.src, location.href).origin; } } catch (e) {}

  var settings = null;
  var current = null; // the login in progress

  function later(fn) { setTimeout(fn, Math.floor(Math.random() * 20)); }

  // A message event as the page would get it from the dialog: JSON string, sandbox origin.
  function emit(message) {
    var event;
    try {
      event = new MessageEvent('message', { data: JSON.stringify(message), origin: ORIGIN });
    } catch (e) {
      event = document.createEvent('MessageEvent');
      event.initMessageEvent('message', false, false, JSON.stringify(message), ORIGIN, '', null);
    }
    window.dispatchEvent(event);
  }

  function respond(login, response) {
    if (login.answered) { return; }
    login.answered = true;
    if (current === login) { current = null; }
    clearInterval(login.timer);
    try { login.callback(response); } catch (e) { setTimeout(function () { throw e; }); }
  }

  // Delivers a message event and the callback in random order (Meta's order is not fixed).
  function conclude(login, message, response) {
    if (login.answered) { return; }
    var steps = [function () { emit(message); }, function () { respond(login, response); }];
    if (Math.random() < 0.5) { steps.reverse(); }
    steps[0]();
    later(steps[1]);
  }

  window.addEventListener('message', function (event) {
    var login = current;
    if (!login || event.origin !== ORIGIN || event.source !== login.popup) { return; }
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (!message || typeof message !== 'object') { return; }
    if (message.type === 'SANDBOX_FB_STEP') {
      login.step = message.step;
      login.session = message.session;
      login.final = !!message.final;
    } else if (message.type === 'SANDBOX_FB_LOGIN') {
      respond(login, message.response);
    }
  });

  function popupClosed(login) {
    if (login.answered || login.closing) { return; }
    login.closing = true;
    // Messages the dialog posted just before closing may still be queued: give them a moment.
    setTimeout(function () {
      if (login.answered) { return; }
      var cancel = function () {
        conclude(login,
          { data: { current_step: login.step || 'LOGIN' }, type: 'WA_EMBEDDED_SIGNUP', event: 'CANCEL', version: 3 },
          { authResponse: null, status: 'unknown' });
      };
      if (login.final && login.session) {
        fetch(ORIGIN + '/dialog/embedded_signup/' + encodeURIComponent(login.session) + '/finish', { method: 'POST' })
          .then(function (r) { return r.json(); })
          .then(function (result) {
            if (result && result.code) { conclude(login, result.message, result.response); } else { cancel(); }
          })
          .catch(cancel);
      } else {
        cancel();
      }
    }, 400);
  }

  var FB = {
    __sandbox: true,
    init: function (options) {
      settings = Object.assign({ version: 'v27.0' }, options || {});
    },
    login: function (callback, options) {
      callback = typeof callback === 'function' ? callback : function () {};
      options = options || {};
      if (!settings || !settings.appId) {
        console.error('FB.login() called before FB.init().');
        later(function () { callback({ authResponse: null, status: 'unknown' }); });
        return;
      }
      if (current && current.popup && !current.popup.closed) {
        current.popup.focus();
        return;
      }
      var query = [
        'app_id=' + encodeURIComponent(settings.appId),
        'config_id=' + encodeURIComponent(options.config_id || ''),
        'response_type=' + encodeURIComponent(options.response_type || 'token'),
        'override_default_response_type=' + (options.override_default_response_type ? 'true' : 'false'),
        'version=' + encodeURIComponent(settings.version || ''),
        'origin=' + encodeURIComponent(location.origin),
        'extras=' + encodeURIComponent(JSON.stringify(options.extras || {}))
      ].join('&');
      var width = 600, height = 700;
      var left = Math.max(0, (window.screenX || 0) + ((window.outerWidth || width) - width) / 2);
      var top = Math.max(0, (window.screenY || 0) + ((window.outerHeight || height) - height) / 2);
      var popup = window.open(ORIGIN + '/dialog/embedded_signup?' + query, 'parley_sandbox_embedded_signup',
        'width=' + width + ',height=' + height + ',left=' + Math.round(left) + ',top=' + Math.round(top) + ',resizable,scrollbars');
      var login = { callback: callback, popup: popup, step: null, session: null, final: false, answered: false };
      if (!popup) {
        console.error('The Embedded Signup popup was blocked.');
        later(function () { callback({ authResponse: null, status: 'unknown' }); });
        return;
      }
      current = login;
      login.timer = setInterval(function () {
        if (popup.closed) { clearInterval(login.timer); popupClosed(login); }
      }, 250);
    },
    getLoginStatus: function (callback) {
      if (typeof callback === 'function') { later(function () { callback({ authResponse: null, status: 'unknown' }); }); }
    },
    getAuthResponse: function () { return null; },
    logout: function (callback) {
      if (typeof callback === 'function') { later(function () { callback({ authResponse: null, status: 'unknown' }); }); }
    },
    api: function () {
      var callback = arguments[arguments.length - 1];
      if (typeof callback === 'function') {
        later(function () { callback({ error: { message: 'The sandbox SDK does not implement FB.api; call the Graph API from your server.', code: 3 } }); });
      }
    },
    AppEvents: { logPageView: function () {}, logEvent: function () {} },
    XFBML: { parse: function () {} },
    Event: { subscribe: function () {}, unsubscribe: function () {} }
  };
  window.FB = FB;
  if (typeof window.fbAsyncInit === 'function' && !window.fbAsyncInit.hasRun) {
    window.fbAsyncInit.hasRun = true;
    window.fbAsyncInit();
  }
})();
"#;
