// The dashboard: apps, fns and triggers (create, edit, delete), each fn's endpoints, containers
// and recent calls, an invoke form, and charts of the last minutes. Everything comes from the
// JSON API, polled (GET /v2/stats each second, the registry every 5 s, call records every 2 s);
// nothing a server or a function sent is ever put into the page as HTML.
"use strict";
(function () {
  const KEY = "fnagent.token";
  const token = sessionStorage.getItem(KEY) || "";
  const HISTORY = 300; // samples of /v2/stats kept for the charts: 5 minutes at one a second
  const WINDOW = 10; // samples each latency point covers
  const MAX_BODY_SHOWN = 64 * 1024;

  const state = {
    apps: [], // [{app, fns: [...], triggers: [...]}]
    selected: null, // {kind: "app" | "fn" | "trigger", id}
    stats: null,
    history: [],
    calls: {}, // fn_id -> [call record]
    recordsMissing: false,
  };

  // --- small helpers -------------------------------------------------------------------------

  // An element: attrs are properties/attributes ("on..." take handlers); children are nodes
  // or text (always as text, never parsed as HTML).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "text") el.textContent = value;
      else if (name === "value") el.value = value; // a textarea's value is no attribute
      else if (name in el && typeof value !== "string") el[name] = value;
      else el.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function logout() {
    sessionStorage.removeItem(KEY);
    location.reload();
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // One API request with the token; JSON in and out. Throws ApiError with the server's
  // message for any error answer.
  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(path, init);
    if (answer.status === 401 && token) logout();
    const text = await answer.text();
    let document_ = null;
    try {
      document_ = text ? JSON.parse(text) : null;
    } catch (exc) {
      document_ = null;
    }
    if (!answer.ok) {
      const message = document_ && document_.message ? document_.message : "HTTP " + answer.status;
      throw new ApiError(answer.status, message);
    }
    return document_;
  }

  async function listAll(path) {
    const items = [];
    let cursor = "";
    for (let page = 0; page < 50; page++) {
      const sep = path.includes("?") ? "&" : "?";
      const answer = await api("GET", path + sep + "per_page=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
      items.push(...answer.items);
      cursor = answer.next_cursor;
      if (!cursor) break;
    }
    return items;
  }

  function findFn(fnId) {
    for (const entry of state.apps) {
      const fn = entry.fns.find((f) => f.id === fnId);
      if (fn) return { app: entry.app, fn, entry };
    }
    return null;
  }

  function showError(el, exc) {
    el.textContent = exc instanceof ApiError || exc instanceof SyntaxError ? exc.message : String(exc);
  }

  function parseObject(label, text) {
    const trimmed = text.trim();
    if (!trimmed) return {};
    let value;
    try {
      value = JSON.parse(trimmed);
    } catch (exc) {
      throw new SyntaxError(label + ": not JSON (" + exc.message + ")");
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new SyntaxError(label + ": must be a JSON object");
    }
    return value;
  }

  // Fn merges config and annotations key by key and deletes a key set to "": a key the user
  // removed from the text is sent as "".
  function mapPatch(before, after) {
    const patch = { ...after };
    for (const key of Object.keys(before || {})) if (!(key in after)) patch[key] = "";
    return patch;
  }

  function pretty(value) {
    return value && Object.keys(value).length ? JSON.stringify(value, null, 2) : "";
  }

  function formatTime(text) {
    if (!text) return "";
    const when = new Date(text);
    return isNaN(when) ? text : when.toLocaleTimeString();
  }

  // --- the skeleton ----------------------------------------------------------------------------

  const el = {};
  function skeleton() {
    const root = document.getElementById("app");
    el.version = h("span", { class: "muted" });
    el.pool = h("span", { id: "pool" });
    el.containers = h("span", { id: "containers" });
    el.charts = {
      rate: h("canvas", { width: 320, height: 90, "aria-label": "calls per second" }),
      cold: h("canvas", { width: 320, height: 90, "aria-label": "cold starts per second" }),
      latency: h("canvas", { width: 320, height: 90, "aria-label": "latency percentiles" }),
    };
    el.chartNotes = {
      rate: h("span", { id: "now-rate" }),
      cold: h("span", { id: "now-cold" }),
      latency: h("span", { id: "now-latency" }),
    };
    el.tree = h("div", { id: "tree" });
    el.detail = h("main", { id: "detail" });
    el.calls = h("div", { id: "calls" });
    el.logText = h("pre", { id: "log-text" });
    el.logTitle = h("h3");
    el.log = h(
      "dialog",
      { id: "log" },
      el.logTitle,
      el.logText,
      h("form", { method: "dialog" }, h("button", { text: "Close" }))
    );
    root.append(
      h(
        "header",
        {},
        h("h1", {}, "fnagent ", el.version),
        h("span", { class: "gauge" }, "pool ", el.pool),
        h("span", { class: "gauge" }, "containers ", el.containers),
        token ? h("button", { id: "logout", onclick: logout, text: "Sign out" }) : null
      ),
      h(
        "section",
        { id: "charts" },
        chartBox("Calls per second", el.charts.rate, el.chartNotes.rate),
        chartBox("Cold starts per second", el.charts.cold, el.chartNotes.cold),
        chartBox("Latency p50 / p90 / p99 (ms)", el.charts.latency, el.chartNotes.latency)
      ),
      h("div", { class: "columns" }, h("nav", {}, newAppForm(), el.tree), el.detail),
      h("section", {}, h("h2", { text: "Recent calls" }), el.calls),
      el.log
    );
  }

  function chartBox(title, canvas, note) {
    return h("figure", { class: "chart" }, h("figcaption", {}, title, " ", note), canvas);
  }

  // --- the registry: apps, fns, triggers -------------------------------------------------------

  async function loadRegistry() {
    const apps = await listAll("/v2/apps");
    const loaded = await Promise.all(
      apps.map(async (app) => {
        const q = "?app_id=" + encodeURIComponent(app.id);
        const [fns, triggers] = await Promise.all([listAll("/v2/fns" + q), listAll("/v2/triggers" + q)]);
        return { app, fns, triggers };
      })
    );
    const before = JSON.stringify(state.apps);
    state.apps = loaded;
    if (JSON.stringify(loaded) === before) return;
    renderTree();
    // The selected entity's panel is rebuilt only when it went away or changed, so a
    // form being typed into is not wiped by a poll.
    const now = selectedEntity();
    if (state.selected && !now) select(null);
    else if (now && JSON.stringify(now) !== state.selectedJson) renderDetail();
  }

  function selectedEntity() {
    const s = state.selected;
    if (!s) return null;
    for (const entry of state.apps) {
      if (s.kind === "app" && entry.app.id === s.id) return entry.app;
      const list = s.kind === "fn" ? entry.fns : s.kind === "trigger" ? entry.triggers : [];
      const found = list.find((x) => x.id === s.id);
      if (found) return found;
    }
    return null;
  }

  function select(selection) {
    state.selected = selection;
    renderTree();
    renderDetail();
    renderCalls();
  }

  function renderTree() {
    const items = state.apps.map(({ app, fns, triggers }) =>
      h(
        "li",
        { class: "app" },
        treeButton("app", app, app.name),
        h(
          "ul",
          {},
          fns.map((fn) =>
            h("li", { class: "fn" }, treeButton("fn", fn, fn.name), " ", h("span", { class: "badge", "data-fn": fn.id }))
          ),
          triggers.map((t) => h("li", { class: "trigger" }, treeButton("trigger", t, t.source)))
        )
      )
    );
    el.tree.replaceChildren(items.length ? h("ul", {}, items) : h("p", { class: "muted", text: "No apps yet." }));
    renderBadges();
  }

  function treeButton(kind, entity, label) {
    const s = state.selected;
    const current = s && s.kind === kind && s.id === entity.id;
    return h("button", {
      class: "link " + kind + "-name" + (current ? " current" : ""),
      text: label,
      title: kind + " " + entity.id,
      onclick: () => select({ kind, id: entity.id }),
    });
  }

  function renderBadges() {
    const fns = (state.stats && state.stats.fns) || {};
    for (const badge of el.tree.querySelectorAll(".badge")) {
      const c = fns[badge.dataset.fn];
      badge.textContent = c && c.running + c.frozen + c.starting ? countsText(c) : "";
    }
  }

  function countsText(c) {
    const parts = [];
    if (c.running) parts.push(c.running + " running");
    if (c.frozen) parts.push(c.frozen + " frozen");
    if (c.starting) parts.push(c.starting + " starting");
    return parts.join(", ");
  }

  function newAppForm() {
    const error = h("p", { class: "error", role: "alert" });
    const name = h("input", { id: "new-app-name", name: "name", required: true, placeholder: "app name" });
    return h(
      "form",
      {
        id: "new-app",
        class: "inline",
        onsubmit: async (event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            const app = await api("POST", "/v2/apps", { name: name.value });
            name.value = "";
            await loadRegistry();
            select({ kind: "app", id: app.id });
          } catch (exc) {
            showError(error, exc);
          }
        },
      },
      h("label", {}, "New app ", name),
      h("button", { type: "submit", text: "Create" }),
      error
    );
  }

  // --- the detail panel ----------------------------------------------------------------------

  function renderDetail() {
    const entity = selectedEntity();
    state.selectedJson = JSON.stringify(entity);
    el.fnContainers = null;
    el.fnCalls = null;
    if (!entity) {
      el.detail.replaceChildren(
        h("p", { class: "muted", text: "Select an app, a fn or a trigger, or create an app." })
      );
      return;
    }
    const kind = state.selected.kind;
    el.detail.replaceChildren(...(kind === "app" ? appPanel(entity) : kind === "fn" ? fnPanel(entity) : triggerPanel(entity)));
  }

  // A form whose submit runs `action` and shows the API's message inline on failure.
  function form(attrs, fields, buttonText, action) {
    const error = h("p", { class: "error", role: "alert" });
    const node = h(
      "form",
      {
        ...attrs,
        onsubmit: async (event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            await action(node);
          } catch (exc) {
            showError(error, exc);
          }
        },
      },
      fields,
      h("button", { type: "submit", text: buttonText }),
      error
    );
    return node;
  }

  function field(label, name, value, attrs) {
    return h("label", {}, h("span", { text: label }), h("input", { name, value: value ?? "", ...(attrs || {}) }));
  }

  function area(label, name, value, attrs) {
    return h("label", {}, h("span", { text: label }), h("textarea", { name, rows: 3, value: value ?? "", ...(attrs || {}) }));
  }

  function numberOrNothing(text) {
    return text.trim() === "" ? undefined : Number(text);
  }

  function deleteButton(what, path, after) {
    const error = h("p", { class: "error", role: "alert" });
    const button = h("button", {
      class: "danger",
      type: "button",
      text: "Delete " + what,
      onclick: async () => {
        if (button.dataset.armed !== "1") {
          button.dataset.armed = "1";
          button.textContent = "Really delete " + what + "?";
          return;
        }
        try {
          await api("DELETE", path);
          after();
          await loadRegistry();
        } catch (exc) {
          showError(error, exc);
        }
      },
    });
    return h("div", { class: "delete" }, button, error);
  }

  function appPanel(app) {
    const entry = state.apps.find((e) => e.app.id === app.id);
    return [
      h("h2", {}, "App ", h("span", { text: app.name })),
      h("p", { class: "muted", text: "id " + app.id }),
      form(
        { id: "edit-app", class: "stacked" },
        [
          area("config (JSON)", "config", pretty(app.config)),
          area("annotations (JSON)", "annotations", pretty(app.annotations)),
          field("syslog_url", "syslog_url", app.syslog_url || ""),
        ],
        "Save app",
        async (node) => {
          const body = {
            config: mapPatch(app.config, parseObject("config", node.elements.config.value)),
            annotations: mapPatch(app.annotations, parseObject("annotations", node.elements.annotations.value)),
          };
          if (node.elements.syslog_url.value !== (app.syslog_url || "")) body.syslog_url = node.elements.syslog_url.value;
          await api("PUT", "/v2/apps/" + app.id, body);
          await loadRegistry();
        }
      ),
      deleteButton("app", "/v2/apps/" + app.id, () => select(null)),
      h("h3", { text: "New fn" }),
      form(
        { id: "new-fn", class: "stacked" },
        [
          field("name", "name", "", { required: true }),
          field("image", "image", "", { required: true, placeholder: "fnagent/fn-hello" }),
          field("memory (MB)", "memory", "", { type: "number", placeholder: "128" }),
          field("timeout (s)", "timeout", "", { type: "number", placeholder: "30" }),
          field("idle_timeout (s)", "idle_timeout", "", { type: "number", placeholder: "30" }),
          area("config (JSON)", "config", ""),
        ],
        "Create fn",
        async (node) => {
          const body = {
            app_id: app.id,
            name: node.elements.name.value,
            image: node.elements.image.value,
            memory: numberOrNothing(node.elements.memory.value),
            timeout: numberOrNothing(node.elements.timeout.value),
            idle_timeout: numberOrNothing(node.elements.idle_timeout.value),
            config: parseObject("config", node.elements.config.value),
          };
          const fn = await api("POST", "/v2/fns", body);
          await loadRegistry();
          select({ kind: "fn", id: fn.id });
        }
      ),
      h("h3", { text: "New trigger" }),
      form(
        { id: "new-trigger", class: "stacked" },
        [
          field("name", "name", "", { required: true }),
          h(
            "label",
            {},
            h("span", { text: "fn" }),
            h("select", { name: "fn_id" }, (entry ? entry.fns : []).map((fn) => h("option", { value: fn.id, text: fn.name })))
          ),
          field("source", "source", "", { required: true, placeholder: "/hello" }),
        ],
        "Create trigger",
        async (node) => {
          const body = { app_id: app.id, fn_id: node.elements.fn_id.value, name: node.elements.name.value, type: "http", source: node.elements.source.value };
          const trigger = await api("POST", "/v2/triggers", body);
          await loadRegistry();
          select({ kind: "trigger", id: trigger.id });
        }
      ),
    ];
  }

  function fnPanel(fn) {
    const found = findFn(fn.id);
    const triggers = found ? found.entry.triggers.filter((t) => t.fn_id === fn.id) : [];
    const annotations = fn.annotations || {};
    const invokeUrl = annotations["fnproject.io/fn/invokeEndpoint"];
    el.fnContainers = h(
      "p",
      { id: "fn-containers", class: "gauges" },
      ["running", "frozen", "starting", "min_hot"].map((s) =>
        h("span", {}, h("b", { "data-state": s, text: "0" }), " " + s.replace("_", " "))
      )
    );
    el.fnCalls = h("div", { id: "fn-calls" });
    const shownAnnotations = { ...annotations };
    delete shownAnnotations["fnproject.io/fn/invokeEndpoint"];
    const panel = [
      h("h2", {}, "Fn ", h("span", { text: fn.name }), found ? h("span", { class: "muted", text: " in " + found.app.name }) : null),
      h("p", { class: "muted", text: "id " + fn.id + " · image " + fn.image }),
      h("h3", { text: "Endpoints" }),
      h(
        "ul",
        { id: "endpoints" },
        invokeUrl ? h("li", {}, "POST ", h("code", { text: invokeUrl })) : null,
        triggers.map((t) => h("li", {}, "any method ", h("code", { text: (t.annotations || {})["fnproject.io/trigger/httpEndpoint"] || t.source })))
      ),
      h("h3", { text: "Containers" }),
      el.fnContainers,
      h("p", { class: "muted", text: "Keep-alive: the server's policy decides (learned per fn by default; GET /v2/fns/" + fn.id + "/scale shows it); idle_timeout " + (fn.idle_timeout ?? 30) + " s." }),
      h("h3", { text: "Invoke" }),
      invokeForm(fn),
      h("h3", { text: "Recent calls" }),
      el.fnCalls,
      h("h3", { text: "Settings" }),
      form(
        { id: "edit-fn", class: "stacked" },
        [
          field("image", "image", fn.image),
          field("memory (MB)", "memory", fn.memory, { type: "number" }),
          field("timeout (s)", "timeout", fn.timeout, { type: "number" }),
          field("idle_timeout (s)", "idle_timeout", fn.idle_timeout, { type: "number" }),
          area("config (JSON)", "config", pretty(fn.config)),
          area("annotations (JSON)", "annotations", pretty(shownAnnotations)),
        ],
        "Save fn",
        async (node) => {
          const body = {
            image: node.elements.image.value,
            memory: numberOrNothing(node.elements.memory.value),
            timeout: numberOrNothing(node.elements.timeout.value),
            idle_timeout: numberOrNothing(node.elements.idle_timeout.value),
            config: mapPatch(fn.config, parseObject("config", node.elements.config.value)),
            annotations: mapPatch(shownAnnotations, parseObject("annotations", node.elements.annotations.value)),
          };
          await api("PUT", "/v2/fns/" + fn.id, body);
          await loadRegistry();
        }
      ),
      deleteButton("fn", "/v2/fns/" + fn.id, () => select(null)),
    ];
    setTimeout(() => {
      renderFnContainers();
      renderCalls();
    });
    return panel;
  }

  function triggerPanel(trigger) {
    const found = findFn(trigger.fn_id);
    const annotations = { ...(trigger.annotations || {}) };
    const endpoint = annotations["fnproject.io/trigger/httpEndpoint"];
    delete annotations["fnproject.io/trigger/httpEndpoint"];
    return [
      h("h2", {}, "Trigger ", h("span", { text: trigger.name })),
      h("p", { class: "muted", text: "id " + trigger.id + " · " + trigger.type + " · fn " + (found ? found.fn.name : trigger.fn_id) }),
      endpoint ? h("p", {}, "Endpoint ", h("code", { text: endpoint })) : null,
      form(
        { id: "edit-trigger", class: "stacked" },
        [field("source", "source", trigger.source), area("annotations (JSON)", "annotations", pretty(annotations))],
        "Save trigger",
        async (node) => {
          await api("PUT", "/v2/triggers/" + trigger.id, {
            source: node.elements.source.value,
            annotations: mapPatch(annotations, parseObject("annotations", node.elements.annotations.value)),
          });
          await loadRegistry();
        }
      ),
      deleteButton("trigger", "/v2/triggers/" + trigger.id, () => select(null)),
    ];
  }

  // --- invoke ----------------------------------------------------------------------------------

  function parseHeaders(text) {
    const headers = new Headers();
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const colon = line.indexOf(":");
      if (colon < 1) throw new SyntaxError("headers: one `Name: value` a line (" + line.trim() + ")");
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    return headers;
  }

  function invokeForm(fn) {
    const result = h("div", { id: "invoke-result" });
    return h(
      "div",
      {},
      form(
        { id: "invoke", class: "stacked" },
        [
          area("body", "body", '{"name": "fnagent"}', { id: "invoke-body", rows: 4 }),
          area("headers (one `Name: value` a line)", "headers", "Content-Type: application/json", { id: "invoke-headers", rows: 2 }),
          h(
            "fieldset",
            { class: "mode" },
            h("label", {}, h("input", { type: "radio", name: "mode", value: "sync", checked: true }), " sync"),
            h("label", {}, h("input", { type: "radio", name: "mode", value: "detached" }), " detached")
          ),
        ],
        "Invoke",
        async (node) => {
          const headers = parseHeaders(node.elements.headers.value);
          if (node.elements.mode.value === "detached") headers.set("Fn-Invoke-Type", "detached");
          // The token goes only where the server checks (and then drops) it: an unchecked
          // call hands every header to the function.
          if (token && state.stats && state.stats.invoke_requires_token && !headers.has("Authorization")) {
            headers.set("Authorization", "Bearer " + token);
          }
          result.replaceChildren(h("p", { class: "muted", text: "calling…" }));
          const started = performance.now();
          const answer = await fetch("/invoke/" + encodeURIComponent(fn.id), {
            method: "POST",
            headers,
            body: node.elements.body.value,
            cache: "no-store",
          });
          const body = await answer.text();
          const ms = Math.round(performance.now() - started);
          const callId = answer.headers.get("Fn-Call-Id");
          result.replaceChildren(
            h(
              "p",
              { class: "status" },
              h("b", { class: "http-status", text: answer.status + " " + answer.statusText }),
              " · " + ms + " ms",
              callId ? h("span", {}, " · call ", h("code", { class: "call-id", text: callId })) : null
            ),
            h(
              "table",
              { class: "headers" },
              [...answer.headers.entries()].map(([k, v]) => h("tr", {}, h("th", { text: k }), h("td", { text: v })))
            ),
            h("pre", { class: "body", text: body.length > MAX_BODY_SHOWN ? body.slice(0, MAX_BODY_SHOWN) + "\n… (" + body.length + " characters in all)" : body })
          );
          setTimeout(pollCalls, 300);
        }
      ),
      result
    );
  }

  // --- live: stats, containers, charts ---------------------------------------------------------

  async function pollStats() {
    const stats = await api("GET", "/v2/stats");
    state.stats = stats;
    state.history.push({ t: stats.time, calls: stats.calls, cold: stats.starts.cold || 0, durations: stats.durations });
    if (state.history.length > HISTORY) state.history.shift();
    const c = stats.containers;
    el.containers.textContent = c.running + " running · " + c.frozen + " frozen · " + c.starting + " starting";
    const p = stats.pool;
    el.pool.textContent = p && "free" in p ? p.free + " free · " + p.in_use + " in use · " + p.starting + " starting" : "off";
    renderBadges();
    renderFnContainers();
    drawCharts();
  }

  function renderFnContainers() {
    if (!el.fnContainers || !state.stats || !state.selected) return;
    const counts = state.stats.fns[state.selected.id] || { running: 0, frozen: 0, starting: 0, min_hot: 0 };
    for (const b of el.fnContainers.querySelectorAll("[data-state]")) {
      b.textContent = String(counts[b.dataset.state] || 0);
    }
  }

  // The duration at quantile q of the calls counted between two cumulative histograms.
  function quantile(q, before, after) {
    const counts = after.map(([bound, n], i) => [bound, n - (before ? before[i][1] : 0)]);
    const total = counts[counts.length - 1][1];
    if (total <= 0) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [bound, n] of counts) {
      if (n >= rank) {
        if (bound === "+Inf") return lower;
        return lower + ((bound - lower) * (rank - below)) / Math.max(n - below, 1);
      }
      lower = bound;
      below = n;
    }
    return lower;
  }

  function drawCharts() {
    const hist = state.history;
    const rate = [];
    const cold = [];
    const p50 = [];
    const p90 = [];
    const p99 = [];
    for (let i = 1; i < hist.length; i++) {
      const dt = Math.max(hist[i].t - hist[i - 1].t, 0.001);
      rate.push(Math.max(hist[i].calls - hist[i - 1].calls, 0) / dt);
      cold.push(Math.max(hist[i].cold - hist[i - 1].cold, 0) / dt);
      const from = hist[Math.max(i - WINDOW, 0)].durations;
      const to = hist[i].durations;
      const ms = (q) => {
        const v = quantile(q, from, to);
        return v === null ? null : v * 1000;
      };
      p50.push(ms(0.5));
      p90.push(ms(0.9));
      p99.push(ms(0.99));
    }
    const last = (xs) => (xs.length ? xs[xs.length - 1] : null);
    const fmt = (x) => (x === null ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(0));
    el.chartNotes.rate.textContent = "now " + fmt(last(rate));
    el.chartNotes.cold.textContent = "now " + fmt(last(cold));
    el.chartNotes.latency.textContent = "now " + [last(p50), last(p90), last(p99)].map(fmt).join(" / ");
    drawChart(el.charts.rate, [rate], ["#2563eb"]);
    drawChart(el.charts.cold, [cold], ["#d97706"]);
    drawChart(el.charts.latency, [p50, p90, p99], ["#059669", "#d97706", "#dc2626"]);
  }

  function drawChart(canvas, series, colors) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const hgt = canvas.height;
    ctx.clearRect(0, 0, w, hgt);
    const values = series.flat().filter((v) => v !== null);
    const max = Math.max(0, ...values);
    const top = max > 0 ? niceCeiling(max) : 1;
    ctx.strokeStyle = "#e5e7eb";
    ctx.fillStyle = "#6b7280";
    ctx.font = "10px sans-serif";
    ctx.beginPath();
    ctx.moveTo(0, hgt - 0.5);
    ctx.lineTo(w, hgt - 0.5);
    ctx.moveTo(0, 0.5);
    ctx.lineTo(w, 0.5);
    ctx.stroke();
    ctx.fillText(values.length ? String(+top.toPrecision(3)) : "no calls yet", 2, 11);
    // The x axis spans the history kept, or the first minute while less has been seen.
    const span = Math.min(HISTORY - 1, Math.max(60, ...series.map((points) => points.length)));
    const step = w / span;
    series.forEach((points, k) => {
      ctx.strokeStyle = colors[k];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let drawing = false;
      const offset = span - points.length;
      points.forEach((v, i) => {
        if (v === null) {
          drawing = false;
          return;
        }
        const x = (offset + i) * step;
        const y = hgt - 1 - (v / top) * (hgt - 14);
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        drawing = true;
      });
      ctx.stroke();
    });
  }

  function niceCeiling(x) {
    const power = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 5, 10]) if (m * power >= x) return m * power;
    return 10 * power;
  }

  // --- call records ----------------------------------------------------------------------------

  async function pollCalls() {
    if (state.recordsMissing) return renderCalls();
    const fns = state.apps.flatMap((e) => e.fns).slice(0, 50);
    const calls = {};
    await Promise.all(
      fns.map(async (fn) => {
        try {
          const answer = await api("GET", "/v2/fns/" + encodeURIComponent(fn.id) + "/calls?per_page=20");
          calls[fn.id] = answer.items || [];
        } catch (exc) {
          // Before call records exist the route itself is missing ("Path not found").
          if (exc instanceof ApiError && exc.status === 404 && exc.message === "Path not found") {
            state.recordsMissing = true;
          }
          calls[fn.id] = [];
        }
      })
    );
    state.calls = calls;
    renderCalls();
  }

  function renderCalls() {
    const all = Object.values(state.calls).flat();
    all.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    el.calls.replaceChildren(callsTable(all.slice(0, 20), true));
    if (el.fnCalls && state.selected) {
      el.fnCalls.replaceChildren(callsTable(state.calls[state.selected.id] || [], false));
    }
  }

  function callsTable(calls, withFn) {
    if (!calls.length) return h("p", { class: "muted no-calls", text: "no calls recorded" });
    const names = {};
    for (const e of state.apps) for (const fn of e.fns) names[fn.id] = fn.name;
    const ms = (x) => (x === null || x === undefined ? "" : String(Math.round(x)));
    return h(
      "table",
      { class: "calls" },
      h(
        "tr",
        {},
        ["created", withFn ? "fn" : null, "status", "HTTP", "start", "queued ms", "start ms", "exec ms", "", "log"]
          .filter((x) => x !== null)
          .map((x) => h("th", { text: x }))
      ),
      calls.map((call) => {
        const t = call.timings || {};
        return h(
          "tr",
          { class: "call status-" + call.status, "data-call": call.id },
          h("td", { text: formatTime(call.created_at), title: call.created_at }),
          withFn ? h("td", { text: names[call.fn_id] || call.fn_id }) : null,
          h("td", { class: "call-status", text: call.status }),
          h("td", { text: call.http_status ?? "" }),
          h("td", { class: "call-start", text: call.start || "" }),
          h("td", { text: ms(t.queued_ms) }),
          h("td", { text: ms(t.start_ms) }),
          h("td", { text: ms(t.exec_ms) }),
          h("td", { class: "muted", text: (call.detached ? "detached" : "") + (call.attempts > 1 ? " ×" + call.attempts : "") + (call.error ? " " + call.error : "") }),
          h("td", {}, h("a", { class: "log", href: "#", text: "log", onclick: (event) => (event.preventDefault(), showLog(call)) }))
        );
      })
    );
  }

  async function showLog(call) {
    el.logTitle.textContent = "Log of call " + call.id;
    el.logText.textContent = "loading…";
    if (!el.log.open) el.log.showModal();
    try {
      const headers = token ? { Authorization: "Bearer " + token } : {};
      const path = "/v2/fns/" + encodeURIComponent(call.fn_id) + "/calls/" + encodeURIComponent(call.id) + "/log";
      const answer = await fetch(path, { headers, cache: "no-store" });
      const text = await answer.text();
      if (answer.ok) el.logText.textContent = text || "(empty log)";
      else el.logText.textContent = (JSON.parse(text || "{}").message || "HTTP " + answer.status);
    } catch (exc) {
      el.logText.textContent = String(exc);
    }
  }

  // --- start -----------------------------------------------------------------------------------

  // Runs work every `ms`, or `slowdown` times as long as it took when that is longer (a large
  // registry is many requests: the page must not become the server's main load).
  async function every(ms, work, slowdown) {
    for (;;) {
      const started = performance.now();
      if (!document.hidden) {
        try {
          await work();
        } catch (exc) {
          console.warn(exc);
        }
      }
      await sleep(Math.max(ms, slowdown * (performance.now() - started)));
    }
  }

  skeleton();
  renderDetail();
  renderCalls();
  fetch("/version")
    .then((r) => r.json())
    .then((v) => (el.version.textContent = v.version))
    .catch(() => {});
  every(1000, pollStats, 2); // one request
  every(5000, loadRegistry, 10); // two for each app
  every(2000, pollCalls, 10); // one for each fn
})();
