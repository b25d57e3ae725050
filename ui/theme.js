// Applies the remembered theme before the first paint (no light/dark flash). A file of
// its own, loaded without `defer`, because devbox's Content-Security-Policy allows no
// inline script.
try {
  const theme = localStorage.getItem('devbox-theme');
  if (theme === 'dark' || theme === 'light') document.documentElement.dataset.theme = theme;
} catch (_) { /* storage unavailable: app.js applies the config's default */ }
