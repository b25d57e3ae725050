/*
 * devbox dashboard: all behaviour of the web UI (ui/index.html is the skeleton,
 * ui/style.css the looks). It talks only to devbox's REST API and WebSocket log
 * streams on the same origin: lists servers live, creates them (blank, git, zip or from
 * a template), starts/stops/restarts/deletes them, streams their logs, shows how many
 * prebuilt servers each template's pool holds ready, logs in with the API token on 401
 * (the token goes to devbox once, for an HttpOnly session cookie; the page never keeps
 * it), and follows the system's dark or light scheme until the user picks one.
 *
 * Stable selectors (for browser tests):
 *   #create-form                          the create form
 *     input[name=name]                    display name
 *     input[name=extension_groups][value=<group id>]   group checkboxes
 *     input[name=workspace][value=empty|git|zip]       workspace choice
 *     input[name=github_url], input[name=zip_file]     its inputs
 *     input[name=start_now]               start the server once created
 *     #create-submit, #create-error       submit button, the form's own error line
 *   #servers                              the server table
 *     tbody[data-server="<slug>"]         one server (also carries data-status,
 *                                         data-phase, and data-busy=<action> while busy)
 *       [data-field=status]               status cell (text: running|stopped|starting|failed)
 *       [data-field=name|slug|port|cpu|memory|uptime|message|error|extensions]
 *       button[data-action=start|stop|restart|delete|logs]
 *       a[data-action=open]               Open IDE link (/vscode/<port>/, visible when running)
 *       .log-panel, id="logs-<slug>"      the log panel (select with [id="logs-<slug>"]
 *                                         when the slug has a dot); lines are .log-line,
 *                                         buttons [data-action=log-clear|log-close]
 *   #servers-empty                        the "no servers" placeholder
 *   #template-tabs [data-tab="<tab>"]     template tabs
 *   #template-items [data-template="<item>"] button[data-action=use-template]
 *     [data-field=pool]                   the template's pool of prebuilt servers (hidden
 *                                         without one; data-ready, data-size, data-coming, data-down;
 *                                         text "ready: <ready> of <size>", then
 *                                         "<coming> starting" while members come up,
 *                                         "<down> failing" while members are down)
 *   #template-dialog input[name=name], #template-create, #template-error
 *   #confirm-dialog, #confirm-yes, #confirm-no       delete confirmation
 *   #token-dialog input[name=token], #token-save, #token-reason   API token login
 *   #token-button (log in), #logout-button (log out; visible with a session)
 *   #whoami                               who the session signs in ("seat-ada", "admin")
 *   #error (.banner-text), #error-close   the error banner
 *   #toasts .toast                        success notices
 *   #theme-choice (a select: system|light|dark; the page's html[data-theme=dark|light]
 *                 is the theme in effect, html[data-theme-choice] the choice)
 *   #refresh, #connection[data-state]
 */
'use strict';

// ---------------------------------------------------------------------------
// Constants and state

const BASE_PATH = location.pathname.replace(/[^/]*$/, ''); // "/" when served at the root
const THEME_KEY = 'devbox-theme';
const MAX_LOG_LINES = 1000;
const FAST_REFRESH_MS = 1500; // while something is starting or stopping
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9 _.-]*$/;
const TRANSITIONAL = new Set(['pending', 'provisioning', 'starting', 'stopping']);

/** Which row buttons each phase offers (logs and delete are always there). */
const PHASE_ACTIONS = {
  pending: ['stop'],
  provisioning: ['stop'],
  starting: ['stop'],
  running: ['stop', 'restart'],
  stopping: [],
  stopped: ['start'],
  failed: ['start', 'stop'],
  invalid: ['start', 'stop'],
};

/** The row actions: how to call them and what to say. */
const ACTIONS = {
  start: { method: 'POST', suffix: '/start', label: 'Start', busy: 'Starting…', done: 'started' },
  stop: { method: 'POST', suffix: '/stop', label: 'Stop', busy: 'Stopping…', done: 'stopped' },
  restart: { method: 'POST', suffix: '/restart', label: 'Restart', busy: 'Restarting…', done: 'restarted' },
  delete: { method: 'DELETE', suffix: '', label: 'Delete', busy: 'Deleting…', done: 'deleted' },
};

const DEFAULT_CONFIG = {
  extension_groups: {},
  ui: {
    default_extension_groups: [],
    settings: { auto_refresh_interval: 5000, enable_dark_mode: true },
    workspace: {
      default_type: 'empty',
      max_upload_size_mb: 100,
      supported_archive_types: ['.zip'],
      allowed_git_schemes: ['https', 'ssh'],
    },
  },
};

const state = {
  config: DEFAULT_CONFIG,
  rows: new Map(), // slug -> row (see createServerRow)
  busy: new Map(), // slug -> { action, token }
  refreshTimer: 0,
  refreshSeq: 0,
  renderedSeq: 0,
  needsToken: false,
  loggedIn: false,
  templateTabs: [],
  selectedTab: '',
  templateTarget: null, // { tab, item } while the template dialog is open
  pools: new Map(), // poolKey(tab, template) -> { template, tab, size, ready, coming, down } (GET /pools)
  poolsSeq: 0,
  brokenThumbs: new Set(), // thumbnail URLs that failed to load
  themeChoice: 'system', // 'dark' or 'light' once the user picks one
};

// ---------------------------------------------------------------------------
// DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** Creates an element: h('a', {href: '/x', class: 'link', text: 'go'}, ...children). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : value);
  }
  el.append(...children.flat().filter((child) => child != null && child !== false));
  return el;
}

/** Sets text only when it changed (no needless DOM churn on every refresh). */
function setText(el, text) {
  const value = String(text ?? '');
  if (el.textContent !== value) el.textContent = value;
}

function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

// ---------------------------------------------------------------------------
// API client

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; resolves to the parsed body, or throws ApiError with the API's words. */
async function api(path, { method = 'GET', json, form } = {}) {
  const headers = { Accept: 'application/json' };
  let body = form;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(BASE_PATH + path, { method, headers, body, credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(0, `cannot reach devbox (${err.message})`);
  }
  const payload = await readBody(response);
  if (response.ok) return payload;
  const message = errorMessage(response, payload);
  if (response.status === 401) askForToken(message);
  throw new ApiError(response.status, message);
}

async function readBody(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch (_) {
    return text;
  }
}

/** `{"error": …, "detail": …}` as one sentence; plain-text bodies as they are. */
function errorMessage(response, payload) {
  if (payload && typeof payload === 'object') {
    const text = payload.error || payload.detail || payload.message;
    if (text) return String(text);
  }
  if (typeof payload === 'string' && payload.trim()) return payload.trim();
  return `${response.status} ${response.statusText || 'error'}`;
}

// ---------------------------------------------------------------------------
// Login (asked for on 401). The token is sent once to /auth/login, which answers with
// an HttpOnly session cookie: no script of this page (or of any other page under
// devbox's origin) can read the token or the session afterwards.

async function logIn(token) {
  const response = await fetch(`${BASE_PATH}auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token }),
    credentials: 'same-origin',
  });
  if (!response.ok) throw new ApiError(response.status, errorMessage(response, await readBody(response)));
  state.loggedIn = true;
}

async function logOut() {
  try {
    await fetch(`${BASE_PATH}auth/logout`, { method: 'POST', credentials: 'same-origin' });
  } catch (_) { /* the session ends on its own */ }
  state.loggedIn = false;
}

/** Whether this browser has a session (after a reload the page knows only by asking). */
async function loadSession() {
  try {
    const session = await readBody(await fetch(`${BASE_PATH}auth/session`, { credentials: 'same-origin' }));
    state.loggedIn = Boolean(session && session.logged_in);
    const who = state.loggedIn ? (session.user || (session.admin ? 'admin' : '')) : '';
    $('#whoami').textContent = who ? `signed in as ${who}` : '';
    setHidden($('#whoami'), !who);
  } catch (_) {
    state.loggedIn = false;
  }
  updateTokenButton();
}

function askForToken(reason) {
  state.needsToken = true;
  updateTokenButton();
  setConnection('error', 'token needed');
  openTokenDialog(reason);
}

function openTokenDialog(reason) {
  setFormError('#token-reason', reason ? `devbox says: ${reason}` : '');
  const dialog = $('#token-dialog');
  if (dialog.open) return;
  $('#token-input').value = '';
  dialog.showModal();
}

function updateTokenButton() {
  if (!state.loggedIn) setHidden($('#whoami'), true);
  setHidden($('#token-button'), !state.needsToken || state.loggedIn);
  setHidden($('#logout-button'), !state.loggedIn);
}

function bindTokenDialog() {
  $('#token-button').addEventListener('click', () => openTokenDialog(''));
  $('#logout-button').addEventListener('click', async () => {
    await logOut();
    updateTokenButton();
    loadEverything();
  });
  $('#token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('#token-input');
    const token = input.value.trim();
    if (!token) return;
    try {
      await logIn(token);
    } catch (err) {
      setFormError('#token-reason', `devbox says: ${err.message}`);
      return;
    } finally {
      input.value = '';
    }
    finishTokenDialog();
    loadSession();
  });
  $('#token-cancel').addEventListener('click', () => $('#token-dialog').close());
}

function finishTokenDialog() {
  $('#token-dialog').close();
  state.needsToken = false;
  updateTokenButton();
  clearError();
  loadEverything();
}

// ---------------------------------------------------------------------------
// Theme

const DARK_SCHEME = window.matchMedia('(prefers-color-scheme: dark)');

/** The remembered pick, 'dark' or 'light', or 'system' (none: follow the system). */
function storedThemeChoice() {
  try {
    const theme = localStorage.getItem(THEME_KEY);
    return theme === 'dark' || theme === 'light' ? theme : 'system';
  } catch (_) {
    return 'system';
  }
}

/**
 * The theme without a pick: the system's, unless the config turns dark mode off
 * (`ui.settings.enable_dark_mode: false`), which keeps it light.
 */
function systemTheme() {
  const darkAllowed = state.config.ui?.settings?.enable_dark_mode ?? true;
  return darkAllowed && DARK_SCHEME.matches ? 'dark' : 'light';
}

/** Puts the choice (the system's theme for 'system') in effect and shows it. */
function applyTheme() {
  const root = document.documentElement;
  root.dataset.theme = state.themeChoice === 'system' ? systemTheme() : state.themeChoice;
  root.dataset.themeChoice = state.themeChoice;
  $('#theme-choice').value = state.themeChoice;
}

/** Remembers a pick ('system' forgets it) and applies it. */
function chooseTheme(choice) {
  state.themeChoice = ['dark', 'light'].includes(choice) ? choice : 'system';
  try {
    if (state.themeChoice === 'system') localStorage.removeItem(THEME_KEY);
    else localStorage.setItem(THEME_KEY, state.themeChoice);
  } catch (_) { /* not remembered, still applied to this page */ }
  applyTheme();
}

// ---------------------------------------------------------------------------
// Notices: the error banner (#error) and success toasts

/** Shows an error in the banner; `source` lets a later success clear only its own error. */
function showError(message, source = 'action') {
  const banner = $('#error');
  banner.dataset.source = source;
  setText($('.banner-text', banner), message);
  banner.hidden = false;
}

function clearError(source) {
  const banner = $('#error');
  if (!source || banner.dataset.source === source) banner.hidden = true;
}

function toast(message) {
  const note = h('div', { class: 'toast', role: 'status', text: message });
  $('#toasts').append(note);
  setTimeout(() => note.classList.add('leaving'), 3500);
  setTimeout(() => note.remove(), 4000);
}

function setConnection(kind, label) {
  const el = $('#connection');
  el.dataset.state = kind;
  setText($('.label', el), label);
}

// ---------------------------------------------------------------------------
// Formatting

function formatUptime(seconds) {
  if (seconds == null) return '—';
  const total = Math.floor(seconds);
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const pad = (n) => String(n).padStart(2, '0');
  if (days) return `${days}d ${hours}h`;
  if (hours) return `${hours}h ${pad(minutes)}m`;
  if (minutes) return `${minutes}m ${pad(secs)}s`;
  return `${secs}s`;
}

const formatCpu = (percent) => (percent == null ? '—' : `${percent.toFixed(1)} %`);
const formatMemory = (mb) => (mb == null ? '—' : `${Math.round(mb)} MB`);
const capitalize = (word) => word.charAt(0).toUpperCase() + word.slice(1);

function formatClock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso || '';
  return date.toLocaleTimeString([], { hour12: false });
}

/** The file stem the API derives from a display name ("My Box" → "My-Box"). */
const slugOf = (name) => name.trimEnd().replace(/ /g, '-');

/** Client-side check of a display name, mirroring the API's rules; null when fine. */
function nameProblem(name) {
  if (!name.trim()) return 'Enter a name.';
  if (name.length > 63) return 'The name is longer than 63 characters.';
  if (!/^[A-Za-z0-9]/.test(name)) return 'The name must start with a letter or a digit.';
  if (!NAME_PATTERN.test(name)) return "Use only letters, digits, spaces, '-', '_' and '.'.";
  return null;
}

// ---------------------------------------------------------------------------
// Config and templates

async function loadConfig() {
  try {
    const answer = await api('config');
    state.config = answer?.data || DEFAULT_CONFIG;
  } catch (err) {
    if (err.status === 401) return; // loaded again once a token is saved
    showError(`Could not load the configuration: ${err.message}`, 'config');
  }
  applyTheme(); // the config may turn dark mode off
  renderGroups();
  renderWorkspaceHints();
}

async function loadTemplates() {
  try {
    const answer = await api('templates');
    state.templateTabs = answer?.data?.tabs || [];
  } catch (err) {
    state.templateTabs = [];
    if (err.status !== 401) showError(`Could not load the templates: ${err.message}`, 'templates');
  }
  renderTemplates();
}

async function loadVersion() {
  try {
    const health = await api('health');
    setText($('#version'), health?.version ? `v${health.version}` : '');
  } catch (_) { /* the server list reports connection problems */ }
}

function refreshInterval() {
  const configured = Number(state.config.ui?.settings?.auto_refresh_interval);
  return Number.isFinite(configured) && configured >= 500 ? configured : 5000;
}

const groupName = (id) => state.config.extension_groups?.[id]?.name || id;

// ---------------------------------------------------------------------------
// Server list: fetched every auto_refresh_interval ms, reconciled row by row by slug

async function refreshServers() {
  clearTimeout(state.refreshTimer);
  const seq = ++state.refreshSeq;
  refreshPools(); // the templates' pools change with the servers: same rhythm
  try {
    const servers = await api('servers');
    if (seq > state.renderedSeq) {
      state.renderedSeq = seq;
      renderServers(Array.isArray(servers) ? servers : []);
    }
    setConnection('ok', 'live');
    setText($('#last-refresh'), `updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
    clearError('refresh');
  } catch (err) {
    if (err.status !== 401) { // a 401 has already asked for a token
      setConnection(err.status === 0 ? 'down' : 'error', err.status === 0 ? 'offline' : 'error');
      showError(`Could not load the servers: ${err.message}`, 'refresh');
    }
  } finally {
    if (seq === state.refreshSeq) scheduleRefresh();
  }
}

/** Polls faster while a server is on its way up or down, so progress shows promptly. */
function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  if (state.needsToken) return; // resumes once a token is saved
  const moving = state.busy.size > 0
    || [...state.rows.values()].some((row) => TRANSITIONAL.has(row.view.phase));
  const delay = moving ? Math.min(FAST_REFRESH_MS, refreshInterval()) : refreshInterval();
  state.refreshTimer = setTimeout(refreshServers, delay);
}

function renderServers(servers) {
  const table = $('#servers');
  let previous = $('thead', table);
  const seen = new Set();
  for (const view of servers) {
    seen.add(view.slug);
    let row = state.rows.get(view.slug);
    if (!row) {
      row = createServerRow(view);
      state.rows.set(view.slug, row);
    }
    updateServerRow(row, view);
    if (previous.nextElementSibling !== row.body) previous.after(row.body);
    previous = row.body;
  }
  for (const slug of [...state.rows.keys()]) {
    if (!seen.has(slug)) removeServerRow(slug);
  }
  renderEmptyState(servers.length);
}

function renderEmptyState(count) {
  const empty = $('#servers-empty');
  setHidden(empty, count > 0);
  setText($('td', empty), 'No servers yet. Create one below, or from a template.');
  setText($('#server-count'), count ? String(count) : '');
}

function removeServerRow(slug) {
  const row = state.rows.get(slug);
  if (!row) return;
  row.logs?.close();
  row.body.remove();
  state.rows.delete(slug);
  state.busy.delete(slug);
}

/** Builds the <tbody> of one server: its main row, a detail row and a log row. */
function createServerRow(view) {
  const row = { fields: {}, buttons: {}, view, logs: null, error: '', extKey: '', autoOpened: false };
  const main = createMainRow(row);
  row.detail = createDetailRow(row);
  row.logRow = h('tr', { class: 'log-row', hidden: true }, h('td', { colspan: 7 }));
  row.body = h('tbody', { class: 'server', dataset: { server: view.slug } }, main, row.detail, row.logRow);
  return row;
}

/** Makes an element carrying data-field=<name> and remembers it in row.fields. */
function fieldOf(row, name, tag = 'span', props = {}) {
  row.fields[name] = h(tag, { ...props, 'data-field': name });
  return row.fields[name];
}

function createMainRow(row) {
  const button = (action) => (row.buttons[action] = h('button', {
    type: 'button', class: action === 'delete' ? 'danger-ghost' : null, 'data-action': action, text: ACTIONS[action].label,
  }));
  row.logsButton = h('button', { type: 'button', 'data-action': 'logs', 'aria-pressed': 'false', text: 'Logs' });
  row.openLink = h('a', {
    class: 'button primary', 'data-action': 'open', target: '_blank', rel: 'noopener', text: 'Open IDE ↗', hidden: true,
  });
  row.badge = h('span', { class: 'badge' });
  const status = fieldOf(row, 'status', 'td', { 'data-label': 'Status' });
  status.append(row.badge);
  const numeric = (name, label) => fieldOf(row, name, 'td', { class: 'num', 'data-label': label });
  return h('tr', { class: 'main' },
    h('td', { class: 'name-cell', 'data-label': 'Name' },
      fieldOf(row, 'name', 'span', { class: 'server-name' }), fieldOf(row, 'slug', 'span', { class: 'slug' })),
    status,
    numeric('port', 'Port'), numeric('cpu', 'CPU'), numeric('memory', 'Memory'), numeric('uptime', 'Uptime'),
    h('td', { class: 'actions' }, h('div', { class: 'action-bar' },
      row.openLink, button('start'), button('stop'), button('restart'), row.logsButton, button('delete'))));
}

function createDetailRow(row) {
  row.fields.extensions = h('details', { class: 'extensions', 'data-field': 'extensions', hidden: true },
    h('summary', {}, h('span', { class: 'ext-summary' }), h('progress', { max: 1, value: 0 })),
    h('ul', { class: 'ext-list' }));
  return h('tr', { class: 'detail', hidden: true }, h('td', { colspan: 7 },
    h('div', { class: 'progress-line', hidden: true },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), fieldOf(row, 'message')),
    fieldOf(row, 'error', 'p', { class: 'row-error', role: 'alert', hidden: true }),
    row.fields.extensions));
}

function updateServerRow(row, view) {
  const previousPhase = row.view.phase;
  row.view = view;
  const { body, fields } = row;
  body.dataset.status = view.status;
  body.dataset.phase = view.phase;
  setText(fields.name, view.name);
  setText(fields.slug, view.slug !== view.name ? view.slug : '');
  updateStatusCell(row, view);
  setText(fields.port, view.port ?? '—');
  fields.port.title = view.pid ? `pid ${view.pid}` : '';
  setText(fields.cpu, formatCpu(view.cpu_percent));
  setText(fields.memory, formatMemory(view.memory_mb));
  setText(fields.uptime, formatUptime(view.uptime));
  if (view.phase !== previousPhase && !TRANSITIONAL.has(view.phase) && row.autoOpened) {
    row.autoOpened = false; // provisioning is over: fold the list it unfolded
    row.fields.extensions.open = false;
  }
  updateActions(row);
  updateDetail(row);
}

function updateStatusCell(row, view) {
  const cell = row.fields.status;
  cell.dataset.status = view.status;
  cell.dataset.phase = view.phase;
  row.badge.dataset.status = view.status;
  row.badge.title = view.phase === view.status ? '' : `phase: ${view.phase}`;
  setText(row.badge, view.status);
}

/** Shows the buttons this phase offers; while busy, the busy one says so and the rest wait. */
function updateActions(row) {
  const { phase, port, slug } = row.view;
  const busy = state.busy.get(slug);
  const offered = new Set([...(PHASE_ACTIONS[phase] || []), 'delete']);
  if (busy) offered.add(busy.action);
  for (const [action, button] of Object.entries(row.buttons)) {
    const isBusy = busy?.action === action;
    setHidden(button, !offered.has(action));
    // A start can take long: stopping it (or deleting the server) stays possible.
    const abortable = busy && ['start', 'restart'].includes(busy.action) && ['stop', 'delete'].includes(action);
    button.disabled = Boolean(busy) && !abortable;
    button.classList.toggle('busy', isBusy);
    setText(button, isBusy ? ACTIONS[action].busy : ACTIONS[action].label);
  }
  row.body.toggleAttribute('data-busy', Boolean(busy));
  if (busy) row.body.dataset.busy = busy.action;
  const open = phase === 'running' && port != null;
  setHidden(row.openLink, !open);
  if (open) row.openLink.href = `${BASE_PATH}vscode/${port}/`;
}

/** The detail row: phase and message, the row's last error, and the extension installs. */
function updateDetail(row) {
  const view = row.view;
  const moving = TRANSITIONAL.has(view.phase);
  const line = $('.progress-line', row.detail);
  const showLine = moving || Boolean(view.message) || view.phase === 'failed' || view.phase === 'invalid';
  setHidden(line, !showLine);
  line.dataset.phase = view.phase;
  $('.spinner', line).hidden = !moving;
  const text = view.message ? `${capitalize(view.phase)}: ${view.message}` : `${capitalize(view.phase)}…`;
  setText(row.fields.message, text);

  // An action's error that only repeats the server's message is not shown twice.
  const showError = Boolean(row.error) && !(view.message && row.error.includes(view.message));
  setHidden(row.fields.error, !showError);
  setText(row.fields.error, row.error);

  const showExtensions = updateExtensions(row, view, moving);
  setHidden(row.detail, !(showLine || showError || showExtensions));
}

function updateExtensions(row, view, moving) {
  const results = view.extension_results || [];
  const failed = results.filter((r) => r.state === 'failed').length;
  const installed = results.filter((r) => r.state === 'installed').length;
  const pending = results.length - failed - installed;
  const details = row.fields.extensions;
  const show = results.length > 0 && (moving || failed > 0);
  setHidden(details, !show);
  if (!show) return false;
  if (moving && !row.autoOpened) {
    details.open = true;
    row.autoOpened = true;
  }
  const parts = [`${installed}/${results.length} extensions installed`];
  if (failed) parts.push(`${failed} failed`);
  if (pending) parts.push(moving ? `${pending} pending` : `${pending} not attempted`);
  setText($('.ext-summary', details), parts.join(' · '));
  const progress = $('progress', details); // only while installing: a full bar of failures misleads
  setHidden(progress, !moving);
  progress.max = results.length;
  progress.value = installed + failed;
  const key = JSON.stringify([moving, results]);
  if (key !== row.extKey) {
    row.extKey = key;
    $('.ext-list', details).replaceChildren(...results.map((result) => extensionItem(result, moving)));
  }
  return true;
}

/** One install outcome; a `pending` left over from an interrupted start reads "not attempted". */
function extensionItem(result, moving) {
  const icons = { installed: '✓', failed: '✗', pending: '…' };
  const label = result.state === 'pending' && !moving ? 'not attempted' : result.state;
  return h('li', { dataset: { state: result.state } },
    h('span', { class: 'ext-icon', 'aria-hidden': 'true', text: icons[result.state] || '•' }),
    h('code', { text: result.extension }),
    h('span', { class: 'ext-state', text: label }),
    result.error ? h('span', { class: 'ext-error', text: result.error }) : null);
}

// ---------------------------------------------------------------------------
// Row actions: start, stop, restart, delete (busy while the API waits for the outcome)

function onTableClick(event) {
  const target = event.target.closest('[data-action]');
  const body = event.target.closest('tbody[data-server]');
  if (!target || !body || target.tagName === 'A') return;
  const slug = body.dataset.server;
  const action = target.dataset.action;
  if (ACTIONS[action]) runAction(slug, action);
  else if (action === 'logs') toggleLogs(slug);
  else if (action === 'log-close') closeLogs(slug);
  else if (action === 'log-clear') state.rows.get(slug)?.logs?.clear();
}

async function runAction(slug, action) {
  const row = state.rows.get(slug);
  if (!row) return;
  const view = row.view;
  if (action === 'delete' && !(await confirmDelete(view))) return;
  const token = setBusy(slug, action);
  const spec = ACTIONS[action];
  try {
    const answer = await api(`servers/${encodeURIComponent(view.id)}${spec.suffix}`, { method: spec.method });
    if (!isCurrent(slug, token)) return;
    const pid = answer?.data?.pid ? ` (pid ${answer.data.pid})` : '';
    toast(`“${view.name}” ${spec.done}${pid}`);
    setRowError(slug, '');
    if (action === 'delete') removeServerRow(slug);
  } catch (err) {
    if (!isCurrent(slug, token)) return; // superseded, e.g. a start stopped on purpose
    showError(`Could not ${action} “${view.name}”: ${err.message}`);
    setRowError(slug, `${capitalize(action)} failed: ${err.message}`);
  } finally {
    if (isCurrent(slug, token)) clearBusy(slug);
    refreshServers();
  }
}

function setBusy(slug, action) {
  const token = Symbol(action);
  state.busy.set(slug, { action, token });
  const row = state.rows.get(slug);
  if (row) {
    row.error = '';
    updateActions(row);
    updateDetail(row);
  }
  scheduleRefresh(); // poll fast while it is busy, to show progress
  return token;
}

const isCurrent = (slug, token) => state.busy.get(slug)?.token === token;

function clearBusy(slug) {
  state.busy.delete(slug);
  const row = state.rows.get(slug);
  if (row) updateActions(row);
}

function setRowError(slug, message) {
  const row = state.rows.get(slug);
  if (!row) return;
  row.error = message;
  updateDetail(row);
}

function confirmDelete(view) {
  return confirmDialog(
    `Delete “${view.name}”?`,
    `The server “${view.name}” (${view.slug}) is stopped and its spec removed. Its workspace folder is kept on disk.`,
  );
}

/** Resolves true when the user clicks #confirm-yes. */
function confirmDialog(title, text) {
  const dialog = $('#confirm-dialog');
  setText($('#confirm-title'), title);
  setText($('#confirm-text'), text);
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
    $('#confirm-no').focus();
  });
}

// ---------------------------------------------------------------------------
// Live logs: one WebSocket per open panel (/ws/logs/{id}), closed with the panel

function toggleLogs(slug) {
  const row = state.rows.get(slug);
  if (!row) return;
  if (row.logs) closeLogs(slug);
  else openLogs(row);
}

function openLogs(row) {
  row.logs = new LogPanel(row.view);
  row.logRow.firstElementChild.replaceChildren(row.logs.element);
  row.logRow.hidden = false;
  row.logsButton.setAttribute('aria-pressed', 'true');
  row.logsButton.classList.add('active');
  row.logs.connect();
}

function closeLogs(slug) {
  const row = state.rows.get(slug);
  if (!row?.logs) return;
  row.logs.close();
  row.logs = null;
  row.logRow.hidden = true;
  row.logRow.firstElementChild.replaceChildren();
  row.logsButton.setAttribute('aria-pressed', 'false');
  row.logsButton.classList.remove('active');
}

class LogPanel {
  constructor(view) {
    this.view = view;
    this.socket = null;
    this.closed = false;
    this.retryMs = 1000;
    this.queue = [];
    this.flushScheduled = false;
    this.lastStamp = '';
    this.lastStampMessages = new Set();
    this.lines = h('div', { class: 'log-lines', role: 'log', tabindex: 0, 'aria-label': `Logs of ${view.name}` });
    this.follow = h('input', { type: 'checkbox', checked: true });
    this.status = h('span', { class: 'log-state', 'data-field': 'log-state' });
    this.element = this.build();
    this.lines.addEventListener('scroll', () => { this.follow.checked = this.atBottom(); });
  }

  build() {
    return h('div', { class: 'log-panel', id: `logs-${this.view.slug}`, dataset: { logs: this.view.slug } },
      h('div', { class: 'log-head' },
        h('span', { class: 'log-title' }, h('strong', { text: `Logs · ${this.view.name}` }), this.status),
        h('span', { class: 'log-controls' },
          h('label', { class: 'check small' }, this.follow, ' Follow'),
          h('button', { type: 'button', class: 'small', 'data-action': 'log-clear', text: 'Clear' }),
          h('button', { type: 'button', class: 'small', 'data-action': 'log-close', text: 'Close' }))),
      this.lines);
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}${BASE_PATH}ws/logs/${encodeURIComponent(this.view.id)}`;
    this.setStatus('connecting', 'connecting…');
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.retryMs = 1000;
      this.setStatus('live', 'live');
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => this.onClose(socket, event);
  }

  onClose(socket, event) {
    if (this.closed || socket !== this.socket) return;
    if (event.code === 4404) {
      this.setStatus('closed', event.reason || 'server not found');
      return;
    }
    const seconds = Math.round(this.retryMs / 1000);
    this.setStatus('closed', `disconnected, retrying in ${seconds}s`);
    setTimeout(() => { if (!this.closed) this.connect(); }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 15000);
  }

  close() {
    this.closed = true;
    this.socket?.close(1000, 'panel closed');
    this.socket = null;
  }

  clear() {
    this.lines.replaceChildren();
  }

  setStatus(kind, text) {
    this.status.dataset.state = kind;
    setText(this.status, text);
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (_) {
      message = { type: 'log', level: 'INFO', source: 'system', message: String(data), timestamp: '' };
    }
    if (message.type === 'skipped') this.queue.push({ notice: message.message || `skipped ${message.skipped} lines` });
    else if (message.type === 'log' && !this.isDuplicate(message)) this.queue.push(message);
    this.scheduleFlush();
  }

  /** Lines already shown (a reconnect replays the recent backlog): skipped by time and text. */
  isDuplicate(line) {
    const stamp = line.timestamp || '';
    if (!stamp) return false;
    if (stamp < this.lastStamp) return true;
    if (stamp === this.lastStamp) {
      if (this.lastStampMessages.has(line.message)) return true;
    } else {
      this.lastStamp = stamp;
      this.lastStampMessages.clear();
    }
    this.lastStampMessages.add(line.message);
    return false;
  }

  scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    requestAnimationFrame(() => this.flush());
  }

  /** Appends queued lines in one go, trims to MAX_LOG_LINES, and follows the end. */
  flush() {
    this.flushScheduled = false;
    if (this.closed || !this.queue.length) return;
    const follow = this.follow.checked;
    const fragment = document.createDocumentFragment();
    for (const item of this.queue.splice(0)) fragment.append(item.notice ? noticeLine(item.notice) : logLine(item));
    this.lines.append(fragment);
    let excess = this.lines.childElementCount - MAX_LOG_LINES;
    while (excess-- > 0) this.lines.firstElementChild.remove();
    if (follow) this.lines.scrollTop = this.lines.scrollHeight;
  }

  atBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.lines;
    return scrollHeight - scrollTop - clientHeight < 24;
  }
}

function logLine(line) {
  const level = String(line.level || 'INFO').toUpperCase();
  const source = line.source || 'server';
  return h('div', { class: 'log-line', dataset: { level, source } },
    h('time', { datetime: line.timestamp || '', title: line.timestamp || '', text: formatClock(line.timestamp) }),
    h('span', { class: 'lvl', text: level }),
    h('span', { class: 'src', text: source }),
    h('span', { class: 'msg', text: line.message ?? '' }));
}

function noticeLine(text) {
  return h('div', { class: 'log-line notice', dataset: { level: 'WARN', source: 'system' } },
    h('span', { class: 'msg', text: `⚠ ${text}` }));
}

// ---------------------------------------------------------------------------
// Create form: empty (JSON), git URL or zip upload (multipart)

function renderGroups() {
  const groups = Object.entries(state.config.extension_groups || {});
  const preselected = new Set(state.config.ui?.default_extension_groups || []);
  const list = $('#group-list');
  if (!groups.length) {
    list.replaceChildren(h('p', { class: 'muted small', text: 'No extension groups are configured.' }));
    return;
  }
  const checked = new Set($$('input[name=extension_groups]:checked', list).map((box) => box.value));
  const keepUserChoice = $$('input[name=extension_groups]', list).length > 0;
  const isChecked = (id) => (keepUserChoice ? checked.has(id) : preselected.has(id));
  list.replaceChildren(...groups.map(([id, group]) => groupOption(id, group, isChecked(id))));
}

function groupOption(id, group, checked) {
  const extensions = group.extensions || [];
  return h('label', { class: 'group-option', title: extensions.join('\n') },
    h('input', { type: 'checkbox', name: 'extension_groups', value: id, checked }),
    h('span', { class: 'group-text' },
      h('span', { class: 'group-name', text: group.name || id }),
      h('span', { class: 'group-desc', text: groupDescription(group, extensions.length) })));
}

function groupDescription(group, count) {
  const extensions = `${count} extension${count === 1 ? '' : 's'}`;
  return group.description ? `${group.description} · ${extensions}` : extensions;
}

function renderWorkspaceHints() {
  const workspace = state.config.ui?.workspace || {};
  const types = workspace.supported_archive_types?.length ? workspace.supported_archive_types : ['.zip'];
  $('#create-zip').accept = types.join(',');
  setText($('#zip-hint'), `${types.join(', ')} up to ${maxUploadMb()} MB; extracted when the server first starts.`);
  const schemes = workspace.allowed_git_schemes || [];
  setText($('#git-hint'), `Cloned when the server first starts${schemes.length ? ` (allowed: ${schemes.join(', ')})` : ''}.`);
  const initial = { github: 'git', git: 'git', zip: 'zip' }[workspace.default_type] || 'empty';
  const form = $('#create-form');
  if (!form.dataset.touched) {
    $(`input[name=workspace][value=${initial}]`, form).checked = true;
    showWorkspaceOption();
  }
}

const maxUploadMb = () => Number(state.config.ui?.workspace?.max_upload_size_mb) || 100;

function showWorkspaceOption() {
  const choice = $('#create-form input[name=workspace]:checked')?.value || 'empty';
  for (const option of $$('#create-form .workspace-option')) option.hidden = option.dataset.workspace !== choice;
}

function readCreateForm(form) {
  const data = new FormData(form);
  return {
    name: String(data.get('name') || ''),
    groups: data.getAll('extension_groups').map(String),
    workspace: String(data.get('workspace') || 'empty'),
    gitUrl: String(data.get('github_url') || '').trim(),
    zip: form.elements.zip_file.files[0] || null,
    startNow: data.get('start_now') != null,
  };
}

/** What is wrong with the form before it is sent; null when it can go. */
function createProblem(values) {
  const problem = nameProblem(values.name);
  if (problem) return problem;
  if (values.workspace === 'git' && !values.gitUrl) return 'Enter the repository URL.';
  if (values.workspace === 'zip') return zipProblem(values.zip);
  return null;
}

function zipProblem(file) {
  if (!file) return 'Choose a zip archive.';
  const types = state.config.ui?.workspace?.supported_archive_types || ['.zip'];
  if (!types.some((type) => file.name.toLowerCase().endsWith(type.toLowerCase()))) {
    return `“${file.name}” is not a ${types.join(' / ')} archive.`;
  }
  const limit = maxUploadMb();
  if (file.size > limit * 1024 * 1024) {
    return `“${file.name}” is ${(file.size / 1048576).toFixed(1)} MB; uploads are limited to ${limit} MB.`;
  }
  return null;
}

function createRequest(values) {
  if (values.workspace === 'empty') {
    return ['servers', { method: 'POST', json: { name: values.name, extension_groups: values.groups } }];
  }
  const form = new FormData();
  form.append('name', values.name);
  // Groups, not their extensions: a group also brings its user settings.
  form.append('extension_groups', JSON.stringify(values.groups));
  if (values.workspace === 'git') form.append('github_url', values.gitUrl);
  else form.append('zip_file', values.zip, values.zip.name);
  return ['servers/create-with-workspace', { method: 'POST', form }];
}

async function submitCreate(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = readCreateForm(form);
  const problem = createProblem(values);
  if (problem) {
    setFormError('#create-error', problem);
    return;
  }
  setFormError('#create-error', '');
  const submit = $('#create-submit');
  submit.disabled = true;
  setText(submit, values.workspace === 'zip' ? 'Uploading…' : 'Creating…');
  try {
    const created = await api(...createRequest(values));
    createdServer(created, values.startNow);
    form.elements.name.value = '';
    form.elements.github_url.value = '';
    form.elements.zip_file.value = '';
    updateSlugHint();
  } catch (err) {
    setFormError('#create-error', err.message);
    showError(`Could not create “${values.name}”: ${err.message}`);
  } finally {
    submit.disabled = false;
    setText(submit, 'Create server');
  }
}

/**
 * After any create: announce, refresh, highlight the new row, and start it if asked.
 * A server handed out by a template's pool comes running: nothing to start.
 */
async function createdServer(view, startNow) {
  clearError('action');
  const running = view.status === 'running';
  const port = view.port ? ` on port ${view.port}` : '';
  toast(running ? `“${view.name}” is ready: a prebuilt server, running${port}` : `Created “${view.name}”${port}`);
  await refreshServers();
  const row = state.rows.get(view.slug);
  if (!row) return;
  row.body.classList.add('flash');
  setTimeout(() => row.body.classList.remove('flash'), 2000);
  if (startNow && !running) runAction(view.slug, 'start');
}

function setFormError(selector, message) {
  const el = $(selector);
  setText(el, message);
  el.hidden = !message;
}

function updateSlugHint() {
  const name = $('#create-name').value;
  const problem = name ? nameProblem(name) : null;
  const hint = $('#create-name-hint');
  hint.classList.toggle('invalid', Boolean(problem));
  if (!name) setText(hint, '1–63 letters, digits, spaces, -, _ and ., starting with a letter or digit.');
  else setText(hint, problem || `Spec file: specs/${slugOf(name)}.yaml`);
}

function bindCreateForm() {
  const form = $('#create-form');
  form.addEventListener('submit', submitCreate);
  form.addEventListener('change', (event) => {
    if (event.target.name === 'workspace') {
      form.dataset.touched = 'yes';
      showWorkspaceOption();
    }
    if (event.target.name === 'zip_file') {
      const file = event.target.files[0];
      setFormError('#create-error', file ? zipProblem(file) || '' : '');
    }
  });
  $('#create-name').addEventListener('input', () => {
    updateSlugHint();
    setFormError('#create-error', '');
  });
}

// ---------------------------------------------------------------------------
// Templates: tabs of cards; "Use template" asks for a name, then creates

function renderTemplates() {
  const tabs = state.templateTabs;
  if (!tabs.some((tab) => tab.name === state.selectedTab)) state.selectedTab = tabs[0]?.name || '';
  $('#template-tabs').replaceChildren(...tabs.map((tab) => h('button', {
    type: 'button', role: 'tab', class: 'tab', dataset: { tab: tab.name },
    'aria-selected': String(tab.name === state.selectedTab), text: tab.name,
  })));
  const tab = tabs.find((t) => t.name === state.selectedTab);
  const items = tab?.items || [];
  const container = $('#template-items');
  if (!items.length) {
    const text = tabs.length ? 'No templates in this tab.' : 'No templates are configured.';
    container.replaceChildren(h('p', { class: 'muted small', text }));
    return;
  }
  container.replaceChildren(...items.map((item) => templateCard(tab, item)));
  updatePoolLines();
}

function templateCard(tab, item) {
  const groups = item.extensions_groups || [];
  return h('article', { class: 'template-card', dataset: { template: item.name } },
    templateThumbnail(item),
    h('div', { class: 'template-body' },
      h('h3', { text: item.name }),
      item.description ? h('p', { class: 'small', text: item.description }) : null,
      groups.length ? h('div', { class: 'chips' }, groups.map((id) => h('span', { class: 'chip', text: groupName(id) }))) : null,
      item.github_url
        ? h('p', { class: 'repo small muted', title: item.github_url, text: `repo: ${shortUrl(item.github_url)}` })
        : null,
      templateLinks(item.icon_links || []),
      h('div', { class: 'template-foot' },
        poolLine(),
        h('button', {
          type: 'button', class: 'primary', 'data-action': 'use-template', text: 'Use template',
          onclick: () => openTemplateDialog(tab, item),
        }))));
}

/** The (empty, hidden) line of a card that shows its pool; updatePoolLines fills it. */
function poolLine() {
  return h('p', { class: 'pool small', 'data-field': 'pool', hidden: true },
    h('span', { class: 'visually-hidden', text: 'Prebuilt servers: ' }),
    h('span', { class: 'pool-ready' }),
    h('span', { class: 'pool-coming', hidden: true },
      h('span', { class: 'visually-hidden', text: ', ' }),
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), h('span', { class: 'pool-coming-text' })),
    h('span', { class: 'pool-down', hidden: true },
      h('span', { class: 'visually-hidden', text: ', ' }), h('span', { class: 'pool-down-text' })));
}

/** The thumbnail, or a lettered placeholder (also when the image cannot load offline). */
function templateThumbnail(item) {
  const placeholder = () => h('div', { class: 'thumb placeholder', 'aria-hidden': 'true', text: initials(item.name) });
  if (!item.thumbnail_url || state.brokenThumbs.has(item.thumbnail_url)) return placeholder();
  const img = h('img', { class: 'thumb', src: item.thumbnail_url, alt: '', loading: 'lazy' });
  img.addEventListener('error', () => {
    state.brokenThumbs.add(item.thumbnail_url); // not asked for again on the next tab switch
    img.replaceWith(placeholder());
  }, { once: true });
  return img;
}

function templateLinks(links) {
  const safe = links.filter((link) => /^https?:\/\//i.test(link.url || ''));
  if (!safe.length) return null;
  return h('div', { class: 'links small' }, safe.map((link) => h('a', {
    href: link.url, target: '_blank', rel: 'noopener noreferrer', title: link.url, text: `${link.lucide_icon || 'link'} ↗`,
  })));
}

// ---------------------------------------------------------------------------
// Pools of prebuilt servers (GET /pools): "ready: 3 of 3" on their templates' cards

/** A pool's key: templates are named within their tab. */
const poolKey = (tab, template) => `${tab}\n${template}`;

const poolOf = (tab, item) => state.pools.get(poolKey(tab?.name ?? '', item?.name ?? ''));

/**
 * Fetches every template's pool and shows it. Quiet on failure: the figures are a
 * hint, the server list reports a lost connection, and a 401 has already asked for a
 * token. While devbox cannot be reached the last figures stay; any other refusal (an
 * older devbox without pools answers 404) shows no pool lines.
 */
async function refreshPools() {
  const seq = ++state.poolsSeq;
  let pools = [];
  try {
    const answer = await api('pools');
    pools = Array.isArray(answer?.data) ? answer.data : [];
  } catch (err) {
    if (err.status === 0) return;
  }
  if (seq !== state.poolsSeq) return; // a later refresh answered first
  state.pools = new Map(pools.map((pool) => [poolKey(pool.tab, pool.template), pool]));
  updatePoolLines();
  updateTemplateDialogInfo();
}

/** Updates the pool line of each shown card in place (no card is rebuilt: focus stays). */
function updatePoolLines() {
  const tab = state.templateTabs.find((t) => t.name === state.selectedTab);
  for (const card of $$('#template-items [data-template]')) {
    const line = $('[data-field=pool]', card);
    if (line) showPool(line, poolOf(tab, { name: card.dataset.template }));
  }
}

/** "ready: 2 of 3", then "1 starting" while members are on their way up, and "1 failing"
 * while members are down (failed and retried, or stopped). */
function showPool(line, pool) {
  setHidden(line, !pool);
  if (!pool) return;
  const { ready = 0, size = 0, coming = 0, down = 0 } = pool;
  Object.assign(line.dataset, { ready, size, coming, down, state: poolState(pool) });
  setText($('.pool-ready', line), `ready: ${ready} of ${size}`);
  setHidden($('.pool-coming', line), !coming);
  setText($('.pool-coming-text', line), `${coming} starting`);
  setHidden($('.pool-down', line), !down);
  setText($('.pool-down-text', line), `${down} failing`);
  line.title = `${ready} prebuilt server${ready === 1 ? '' : 's'} of this template ready to hand out at once`
    + ` (the pool keeps ${size})${coming ? `; ${coming} on the way` : ''}`
    + `${down ? `; ${down} down, being retried or replaced` : ''}`;
}

/** Colours the line: green with a server to hand out, amber while one comes, red when
 * the only others are down, else grey. */
function poolState({ ready = 0, coming = 0, down = 0 }) {
  if (ready > 0) return 'ready';
  if (coming > 0) return 'filling';
  return down > 0 ? 'down' : 'empty';
}

const initials = (name) => name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join('');
const shortUrl = (url) => url.replace(/^[a-z]+:\/\//i, '').replace(/\.git$/, '');

function openTemplateDialog(tab, item) {
  state.templateTarget = { tab, item };
  setText($('#template-dialog-name'), item.name);
  setText($('#template-dialog-info'), templateSummary(tab, item));
  setFormError('#template-error', '');
  const input = $('#template-server-name');
  input.value = suggestName(item.name);
  $('#template-dialog').showModal();
  input.select();
}

/** What the new server is made of, and whether it comes running (from the pool) or stopped. */
function templateSummary(tab, item) {
  const groups = (item.extensions_groups || []).map(groupName);
  const parts = [groups.length ? `Extension groups: ${groups.join(', ')}.` : 'No extension groups.'];
  parts.push(item.github_url ? `Workspace: ${shortUrl(item.github_url)}.` : 'Workspace: empty.');
  const pool = poolOf(tab, item);
  if (pool?.ready > 0) parts.push('A prebuilt server is ready: you get it running, at once.');
  else if (pool) parts.push('No prebuilt server is ready right now: the server is created stopped.');
  else parts.push('The server is created stopped.');
  return parts.join(' ');
}

/** Keeps the open template dialog's summary in step with its pool. */
function updateTemplateDialogInfo() {
  const { tab, item } = state.templateTarget || {};
  if (item && $('#template-dialog').open) setText($('#template-dialog-info'), templateSummary(tab, item));
}

/** The template's name, numbered if a server of that name exists. */
function suggestName(base) {
  const clean = base.replace(/[^A-Za-z0-9 _.-]/g, '').trim().slice(0, 60) || 'workspace';
  const taken = new Set([...state.rows.values()].map((row) => row.view.slug.toLowerCase()));
  let name = clean;
  for (let n = 2; taken.has(slugOf(name).toLowerCase()); n++) name = `${clean} ${n}`;
  return name;
}

async function submitTemplate(event) {
  event.preventDefault();
  const { tab, item } = state.templateTarget || {};
  if (!item) return;
  const name = $('#template-server-name').value;
  const problem = nameProblem(name);
  if (problem) {
    setFormError('#template-error', problem);
    return;
  }
  const submit = $('#template-create');
  submit.disabled = true;
  setText(submit, 'Creating…');
  try {
    const created = await api('servers/create-from-template', {
      method: 'POST', json: { name, template_id: item.name, tab_name: tab.name },
    });
    $('#template-dialog').close();
    createdServer(created, false);
  } catch (err) {
    setFormError('#template-error', err.message);
    showError(`Could not create “${name}” from “${item.name}”: ${err.message}`);
  } finally {
    submit.disabled = false;
    setText(submit, 'Create');
  }
}

function bindTemplates() {
  $('#template-tabs').addEventListener('click', (event) => {
    const tab = event.target.closest('[data-tab]');
    if (!tab) return;
    state.selectedTab = tab.dataset.tab;
    renderTemplates();
  });
  $('#template-form').addEventListener('submit', submitTemplate);
  $('#template-cancel').addEventListener('click', () => $('#template-dialog').close());
}

// ---------------------------------------------------------------------------
// Start-up

async function loadEverything() {
  await loadConfig();
  if (state.needsToken) return;
  loadTemplates();
  loadVersion();
  refreshServers();
}

function bindEvents() {
  $('#theme-choice').addEventListener('change', (event) => chooseTheme(event.target.value));
  // The system switching scheme, or a pick made in another tab.
  DARK_SCHEME.addEventListener('change', applyTheme);
  window.addEventListener('storage', (event) => {
    if (event.key !== THEME_KEY && event.key !== null) return;
    state.themeChoice = storedThemeChoice();
    applyTheme();
  });
  $('#error-close').addEventListener('click', () => clearError());
  $('#refresh').addEventListener('click', () => refreshServers());
  $('#servers').addEventListener('click', onTableClick);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !state.needsToken) refreshServers();
  });
  bindTokenDialog();
  bindCreateForm();
  bindTemplates();
}

function start() {
  state.themeChoice = storedThemeChoice();
  applyTheme(); // again once the config is loaded (enable_dark_mode)
  bindEvents();
  updateSlugHint();
  loadSession();
  loadEverything();
}

start();
