// Applies the theme before the first paint (no light/dark flash). A file of its own,
// loaded without `defer`, because devbox's Content-Security-Policy allows no inline
// script. The user's pick ('dark' or 'light', kept in localStorage) wins; without one
// the page follows the system's `prefers-color-scheme` (app.js keeps following it, and
// applies the config's `enable_dark_mode: false`, which keeps the page light).
try {
  const pick = localStorage.getItem('devbox-theme');
  const dark = pick === 'dark'
    || (pick !== 'light' && window.matchMedia('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
} catch (_) { /* storage unavailable: app.js applies the system's theme */ }
