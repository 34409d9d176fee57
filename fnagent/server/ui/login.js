// The page's loader: finds the management token (sessionStorage, or the login form when the
// server asks for one), then fetches the dashboard's script with it and runs it. The
// dashboard script is never served without the token, so until then the login form is all
// there is.
"use strict";
(function () {
  const KEY = "fnagent.token";
  const dashboardUrl = document.currentScript.dataset.dashboard;
  const form = document.getElementById("login");
  const input = document.getElementById("login-token");
  const error = document.getElementById("login-error");

  async function load(token) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    let answer;
    try {
      answer = await fetch(dashboardUrl, { headers, cache: "no-store" });
    } catch (exc) {
      error.textContent = "The server does not answer: " + exc.message;
      form.hidden = false;
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(KEY);
      error.textContent = token ? "Wrong token." : "";
      form.hidden = false;
      input.value = "";
      input.focus();
      return;
    }
    if (!answer.ok) {
      error.textContent = "The page could not load: HTTP " + answer.status;
      form.hidden = false;
      return;
    }
    if (token) sessionStorage.setItem(KEY, token);
    form.hidden = true;
    error.textContent = "";
    const script = document.createElement("script");
    script.src = URL.createObjectURL(new Blob([await answer.text()], { type: "text/javascript" }));
    document.head.appendChild(script);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(input.value.trim());
  });
  load(sessionStorage.getItem(KEY) || "");
})();
