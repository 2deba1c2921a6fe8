// sortloop console: when the session ends (expired or logged out elsewhere), go to the login page with the reason.
(function () {
  async function check() {
    try {
      const r = await fetch('/auth/session', {credentials: 'same-origin', cache: 'no-store'});
      if (r.status === 401) {
        const body = await r.json();
        location.href = '/login?e=' + encodeURIComponent(body.reason || 'login') + '&next=/ui/';
      }
    } catch (e) { /* the station may be restarting: try again later */ }
  }
  window.sortloopCheckSession = check;
  setInterval(check, 30000);
})();
