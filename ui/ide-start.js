// The page of an IDE that is not running (served by the proxy: src/proxy/idle_page.rs).
// With data-mode="offer" it shows a Start button that starts the server through the
// API; with data-mode="wait" the server is already on its way. Either way it shows the
// server's status and message while it starts, and reloads into the IDE once it runs.
(() => {
  const body = document.body;
  const button = document.getElementById('ide-start');
  const progress = document.getElementById('ide-progress');
  const phase = document.getElementById('ide-phase');
  const api = `/servers/${encodeURIComponent(body.dataset.server)}`;
  let watching = false;

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Shows the server's status until it runs, then opens the IDE (this page's URL). */
  async function watch() {
    if (watching) return;
    watching = true;
    while (watching) {
      try {
        const answer = await fetch(api, { credentials: 'same-origin', cache: 'no-store' });
        if (answer.ok) {
          const server = await answer.json();
          phase.textContent = server.status;
          if (server.message) progress.textContent = server.message;
          if (server.status === 'running') {
            location.reload();
            return;
          }
        }
      } catch (_) { /* devbox restarting: try again */ }
      await pause(1000);
    }
  }

  async function start() {
    button.disabled = true;
    progress.textContent = 'Starting…';
    watch();
    const answer = await fetch(`${api}/start`, { method: 'POST', credentials: 'same-origin' })
      .catch((err) => ({ ok: false, status: 0, json: async () => ({ error: err.message }) }));
    if (answer.ok) {
      location.reload();
      return;
    }
    watching = false;
    const failure = await answer.json().catch(() => ({}));
    progress.textContent = failure.error || `devbox answered HTTP ${answer.status}`;
    button.disabled = false;
  }

  if (body.dataset.mode === 'offer') {
    button.hidden = false;
    button.addEventListener('click', start);
  } else {
    watch();
  }
})();
