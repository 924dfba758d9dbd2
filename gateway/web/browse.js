// The browsable API: the page shows what a browser without a token was
// answered; with the token of the movies page (sessionStorage), it asks
// again as that user, and sends the POST form.
"use strict";

const $ = (id) => document.getElementById(id);

async function ask(method, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem("movies.token");
  if (token) headers.Authorization = "Token " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(location.pathname + location.search, { method, headers, body });
  const text = await response.text();
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as it is */ }
  $("status").textContent = `${response.status} ${response.statusText}`;
  $("method").textContent = method;
  $("response").textContent = shown;
}

document.addEventListener("DOMContentLoaded", () => {
  if (sessionStorage.getItem("movies.token") && $("method").textContent === "GET") ask("GET");
  const form = $("post-form");
  if (form) form.addEventListener("submit", (e) => { e.preventDefault(); ask("POST", $("post-body").value); });
});
