// The movies page: plain JavaScript over the public REST API. The token
// lives in sessionStorage (this tab only), never in a cookie.
"use strict";

const PAGE = 50;
const store = window.sessionStorage;
const cache = new Map(); // path -> {etag, body}: conditional GETs
let offset = 0;
let timer = null;

const $ = (id) => document.getElementById(id);

function token() { return store.getItem("movies.token"); }

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Token " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const cached = method === "GET" ? cache.get(path) : undefined;
  if (cached) headers["If-None-Match"] = cached.etag;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { status: 0, body: { detail: "The server cannot be reached." } };
  }
  if (response.status === 304 && cached) return { status: 200, body: cached.body };
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = { detail: text }; }
  const etag = response.headers.get("ETag");
  if (method === "GET" && response.ok && etag) cache.set(path, { etag, body: parsed });
  if (response.status === 401 && token()) signedOut("Your session has ended: please log in again.");
  return { status: response.status, body: parsed };
}

function say(text, bad) {
  const m = $("message");
  m.textContent = text || "";
  m.classList.toggle("bad", Boolean(bad));
}

// Shows a 400's field errors next to their fields; anything else as a message.
function showErrors(form, body) {
  for (const el of document.querySelectorAll(`#${form}-form .error`)) el.textContent = "";
  if (!body || typeof body !== "object") return;
  let shown = false;
  for (const [field, messages] of Object.entries(body)) {
    const el = $(`${form}-${field}-error`);
    const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
    if (el) { el.textContent = text; shown = true; }
    else say(text, true);
  }
  if (!shown && body.detail) say(body.detail, true);
}

function fields(form) {
  const data = {};
  for (const input of $(form).querySelectorAll("input")) data[input.name] = input.value;
  return data;
}

async function signIn(form, path) {
  const body = fields(`${form}-form`);
  // The Sessions view lists this token by this name.
  if (form === "login") body.name = "Web page";
  const r = await api("POST", path, body);
  if (r.status !== 200) {
    if (r.status === 400) showErrors(form, r.body);
    else say((r.body && r.body.detail) || `Refused (${r.status}).`, true);
    return;
  }
  showErrors(form, null);
  $(`${form}-form`).reset();
  store.setItem("movies.token", r.body.token);
  store.setItem("movies.username", r.body.user.username);
  say(form === "register" ? `Welcome, ${r.body.user.username}.` : `Logged in as ${r.body.user.username}.`);
  show();
}

function signedOut(text) {
  store.removeItem("movies.token");
  store.removeItem("movies.username");
  cache.clear();
  say(text || "");
  show();
}

async function logOut() {
  await api("POST", "/api/auth/logout");
  signedOut("Logged out.");
}

function cell(row, text, label) {
  const td = document.createElement("td");
  td.textContent = text;
  if (label) td.dataset.label = label;
  row.appendChild(td);
  return td;
}

function movieRow(movie) {
  const row = document.createElement("tr");
  row.className = "movie";
  row.dataset.movieId = movie.id;
  cell(row, movie.title, "Title").className = "title";
  cell(row, movie.director, "Director");
  const average = movie.rating_average == null ? "–" : Number(movie.rating_average).toFixed(1);
  cell(row, average, "Average").className = "average";
  cell(row, String(movie.rating_count ?? 0), "Ratings").className = "count";
  const rate = cell(row, "");
  rate.className = "rate";
  const label = document.createElement("label");
  label.className = "sr-only";
  label.htmlFor = `rate-${movie.id}`;
  label.textContent = `Your rating of ${movie.title}`;
  const choice = document.createElement("select");
  choice.id = `rate-${movie.id}`;
  for (let n = 5; n >= 1; n--) choice.add(new Option(String(n), String(n)));
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Rate";
  button.setAttribute("aria-label", `Rate ${movie.title}`);
  button.addEventListener("click", () => rateMovie(movie, Number(choice.value)));
  rate.append(label, choice, " ", button);
  return row;
}

// The list as the search box and the sort menu ask for it: a find, whose
// items carry their averages (no request per movie).
function moviesPath() {
  const query = new URLSearchParams({ limit: PAGE, offset, ordering: $("find-ordering").value });
  const search = $("find-search").value.trim();
  if (search) query.set("search", search);
  return `/api/auth/movies?${query}`;
}

async function loadMovies() {
  const list = await api("GET", moviesPath());
  if (list.status !== 200) return;
  const rows = list.body.results.map(movieRow);
  const body = $("movies").tBodies[0];
  // Keep the focus where it was when the rows are rebuilt.
  const focused = document.activeElement && document.activeElement.id;
  body.replaceChildren(...rows);
  if (focused && $(focused)) $(focused).focus();
  $("movies-empty").hidden = rows.length > 0;
  $("previous-page").hidden = !list.body.previous;
  $("next-page").hidden = !list.body.next;
}

async function rateMovie(movie, rating) {
  const r = await api("POST", "/api/auth/rating", { movie: movie.id, rating });
  if (r.status === 201) say(`You rated ${movie.title}: ${rating}.`);
  else if (r.status === 400) say(Object.values(r.body).flat().join(" "), true);
  else say((r.body && r.body.detail) || `Refused (${r.status}).`, true);
  await loadMovies();
}

async function addMovie(event) {
  event.preventDefault();
  const r = await api("POST", "/api/auth/movies", fields("movie-form"));
  if (r.status === 201) {
    showErrors("movie", null);
    $("movie-form").reset();
    say(`Added ${r.body.title}.`);
    await loadMovies();
  } else if (r.status === 400) {
    showErrors("movie", r.body);
  } else {
    say((r.body && r.body.detail) || `Refused (${r.status}).`, true);
  }
}

const KINDS = {
  registered: "Registered",
  logged_in: "Logged in",
  logged_out: "Logged out",
  logged_out_all: "Logged out everywhere",
  throttled: "Logins throttled after failed attempts",
  login_failed: "A wrong password was given",
  password_changed: "Password changed (other sessions logged out)",
  token_revoked: "A session was logged out",
  token_refreshed: "A session was extended",
  movie_added: "Added a movie",
  rated: "Rated a movie",
};

async function loadActivity() {
  const r = await api("GET", `/api/auth/me/activity?limit=${PAGE}`);
  if (r.status !== 200) return;
  const items = r.body.results.map((entry) => {
    const li = document.createElement("li");
    li.className = `activity ${entry.kind}`;
    const time = document.createElement("time");
    time.dateTime = entry.time;
    time.textContent = new Date(entry.time).toLocaleString();
    let text = KINDS[entry.kind] || entry.kind;
    if (entry.movie) text += `: ${entry.movie.title}`;
    if (entry.rating) text += ` (${entry.rating})`;
    if (entry.address) text += ` from ${entry.address}`;
    if (entry.user_agent) text += ` (${entry.user_agent})`;
    li.append(time, text);
    return li;
  });
  $("activity").replaceChildren(...items);
}

function sessionRow(t) {
  const row = document.createElement("tr");
  row.className = t.current ? "session current" : "session";
  row.dataset.tokenId = t.id;
  cell(row, (t.name || "–") + (t.current ? " (this page)" : ""), "Name").className = "name";
  cell(row, new Date(t.created).toLocaleString(), "Signed in");
  cell(row, new Date(t.expiry).toLocaleString(), "Expires");
  cell(row, t.address || "–", "From");
  cell(row, t.user_agent || "–", "Browser or client");
  const end = cell(row, "");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Log out";
  button.setAttribute("aria-label", `Log out the session ${t.name || ""} from ${t.address || "an unknown address"}`);
  button.addEventListener("click", () => endSession(t));
  end.append(button);
  return row;
}

async function loadSessions() {
  const r = await api("GET", `/api/auth/tokens?limit=${PAGE}`);
  if (r.status !== 200) return;
  $("sessions").tBodies[0].replaceChildren(...r.body.results.map(sessionRow));
}

async function endSession(t) {
  const r = await api("DELETE", `/api/auth/tokens/${encodeURIComponent(t.id)}`);
  if (r.status === 204 && t.current) return signedOut("Logged out.");
  if (r.status === 204) say("That session is logged out.");
  else say((r.body && r.body.detail) || `Refused (${r.status}).`, true);
  await loadSessions();
}

async function changePassword(event) {
  event.preventDefault();
  const r = await api("POST", "/api/auth/password", fields("password-form"));
  if (r.status === 204) {
    showErrors("password", null);
    $("password-form").reset();
    say("Password changed. Your other sessions are logged out.");
    await loadSessions();
  } else if (r.status === 400) {
    showErrors("password", r.body);
  } else {
    say((r.body && r.body.detail) || `Refused (${r.status}).`, true);
  }
}

const VIEWS = ["movies", "activity", "sessions"];

function view() {
  const named = location.hash.slice(1);
  return VIEWS.includes(named) ? named : "movies";
}

function refresh() {
  if (!token() || document.hidden) return;
  const shown = view();
  if (shown === "activity") loadActivity();
  else if (shown === "sessions") loadSessions();
  else loadMovies();
}

function show() {
  const inside = Boolean(token());
  $("signed-out").hidden = inside;
  $("signed-in").hidden = !inside;
  $("who").hidden = !inside;
  $("username").textContent = inside ? store.getItem("movies.username") : "";
  const shown = view();
  for (const name of VIEWS) {
    $(`${name}-view`).hidden = name !== shown;
    $(`${name}-link`).setAttribute("aria-current", name === shown ? "page" : "false");
  }
  clearInterval(timer);
  if (inside) {
    refresh();
    timer = setInterval(refresh, 5000);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("register-form").addEventListener("submit", (e) => { e.preventDefault(); signIn("register", "/api/auth/register"); });
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); signIn("login", "/api/auth/login"); });
  $("movie-form").addEventListener("submit", addMovie);
  $("find-form").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; loadMovies(); });
  $("find-search").addEventListener("input", () => { offset = 0; loadMovies(); });
  $("find-ordering").addEventListener("change", () => { offset = 0; loadMovies(); });
  $("password-form").addEventListener("submit", changePassword);
  $("logout").addEventListener("click", logOut);
  $("previous-page").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadMovies(); });
  $("next-page").addEventListener("click", () => { offset += PAGE; loadMovies(); });
  // A message belongs to the view that raised it.
  window.addEventListener("hashchange", () => { say(""); show(); });
  show();
});
