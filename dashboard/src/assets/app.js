// Progressive enhancement only: every page is complete without this script.
// - #live[data-stream] is kept current from Server-Sent Events (server-rendered HTML).
// - Action forms are sent with fetch, so the page stays where it is and shows the
//   confirmation; without this script they post and redirect.
(function () {
  'use strict';
  var status = document.getElementById('live-status');
  function say(text) { if (status) { status.textContent = text; } }

  var live = document.getElementById('live');
  if (live && live.dataset.stream && 'EventSource' in window) {
    var source = new EventSource(live.dataset.stream);
    source.addEventListener('open', function () { say('live'); });
    source.addEventListener('error', function () {
      // CLOSED: the server refused the stream (e.g. the session ended with a restart).
      say(source.readyState === EventSource.CLOSED ? 'not live: reload the page' : 'reconnecting…');
    });
    source.addEventListener('update', function (e) {
      // Keep what the reader had open and where the keyboard focus was across the swap.
      var open = Array.prototype.map.call(
        live.querySelectorAll('details[open][data-key]'),
        function (d) { return d.dataset.key; });
      var focused = document.activeElement;
      var focusHref = focused && live.contains(focused) ? focused.getAttribute('href') : null;
      // Markup rendered and escaped by the server, from the same origin.
      live.innerHTML = e.data;
      open.forEach(function (key) {
        var d = live.querySelector('details[data-key="' + CSS.escape(key) + '"]');
        if (d) { d.open = true; }
      });
      if (focusHref) {
        var again = live.querySelector('a[href="' + CSS.escape(focusHref) + '"]');
        if (again) { again.focus(); }
      }
      live.dispatchEvent(new CustomEvent('sluice:updated'));
    });
    source.addEventListener('reload', function () {
      // Signed out or access revoked: the reloaded page says which.
      source.close();
      window.location.reload();
    });
    window.addEventListener('pagehide', function () { source.close(); });
  }

  var flash = document.getElementById('flash');
  document.querySelectorAll('form[data-action]').forEach(function (form) {
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { return; }
      var button = form.querySelector('button');
      if (button) { button.disabled = true; }
      fetch(form.action, {
        method: 'POST',
        body: new URLSearchParams(new FormData(form)),
        headers: { 'Sluice-Fetch': '1' },
        credentials: 'same-origin'
      }).then(function (resp) {
        return resp.text().then(function (text) {
          if (flash) {
            flash.textContent = text;
            flash.className = resp.ok ? 'flash ok' : 'flash error';
          }
        });
      }).catch(function (err) {
        if (flash) {
          flash.textContent = 'The request did not reach the dashboard: ' + err;
          flash.className = 'flash error';
        }
      }).finally(function () {
        if (button) { button.disabled = false; }
      });
    });
  });
})();
