/**
 * The console's HTML, server-rendered with hono/html: every interpolated
 * value is escaped (names, annotations, images and condition messages are
 * tenant text), nothing goes through raw(), and the page carries no inline
 * script or style (the Content-Security-Policy forbids both).
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { describePrincipal } from "../access.ts";
import type { Principal } from "../token.ts";
import { type HostView, LATEST, type RevisionView, type ServiceView } from "./data.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export const STATIC_PATH = "/console/static";

function layout(title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="${STATIC_PATH}/console.css">
<script src="${STATIC_PATH}/console.js" defer></script>
</head>
<body>
${body}
</body>
</html>`;
}

function errorBanner(error: string | undefined): Html {
  return error ? html`<p class="error" role="alert">${error}</p>` : html``;
}

export function loginPage(error?: string): Html {
  return layout(
    "Skiff console: log in",
    html`<main class="login">
<h1>Skiff console</h1>
${errorBanner(error)}
<form method="post" action="/console/login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="hint">Any API token: the admin token, or one made with <code>skiff token create</code>
(<code>view</code> tokens read, <code>edit</code> tokens may change traffic).</p>
</main>`,
  );
}

/** A failure outside a form (the store unreachable, ...): its message, and the way back. */
export function errorPage(message: string): Html {
  return layout(
    "Skiff console: error",
    html`<main class="login">
<h1>Skiff console</h1>
${errorBanner(message)}
<p><a href="/console">Back to the console</a></p>
</main>`,
  );
}

export interface OverviewPage {
  principal: Principal;
  canEdit: (namespace: string) => boolean;
  services: ServiceView[];
  hosts: HostView[] | undefined;
  error?: string | undefined;
}

export function overviewPage(page: OverviewPage): Html {
  return layout(
    "Skiff console",
    html`<header>
<h1>Skiff console</h1>
<span class="who">${describePrincipal(page.principal)}</span>
<form method="post" action="/console/logout"><button type="submit">Log out</button></form>
</header>
<main>
${errorBanner(page.error)}
<section id="services">
<h2>Services</h2>
${page.services.length === 0 ? html`<p class="empty">No services.</p>` : ""}
${page.services.map((s) => serviceCard(s, page.canEdit(s.namespace)))}
</section>
<section id="hosts">
<h2>Hosts</h2>
${hostsTable(page.hosts)}
</section>
</main>`,
  );
}

function readyBadge(status: string): Html {
  const cls = status === "True" ? "ok" : status === "False" ? "bad" : "unknown";
  return html`<span class="ready ${cls}">${status === "True" ? "Ready" : status === "False" ? "Failing" : "Not ready"}</span>`;
}

function serviceCard(s: ServiceView, edit: boolean): Html {
  const ref = `${s.namespace}/${s.name}`;
  const formId = `traffic-${s.namespace}-${s.name}`;
  return html`<article class="service" data-service="${ref}">
<h3><span class="ns">${s.namespace}/</span>${s.name} ${readyBadge(s.ready)}</h3>
<p class="url">${s.url ? html`<a href="${s.url}" rel="noreferrer">${s.url}</a>` : "no URL yet"}</p>
<p class="rate"><svg class="spark" data-service="${ref}" viewBox="0 0 120 24" width="120" height="24" role="img" aria-label="request rate"></svg>
<span class="rps" data-service="${ref}">… req/s</span></p>
${s.readyMessage ? html`<p class="message">${s.readyMessage}</p>` : ""}
${
  s.annotations.length > 0
    ? html`<details class="annotations"><summary>annotations (${s.annotations.length})</summary><dl>
${s.annotations.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
</dl></details>`
    : ""
}
<form id="${formId}" method="post" action="/console/services/${s.namespace}/${s.name}/traffic">
<input type="hidden" name="resourceVersion" value="${s.resourceVersion}">
<table class="revisions">
<thead><tr><th>Revision</th><th>State</th><th>Traffic</th><th>Tags</th><th>Instances</th><th>Runs</th>${
    edit ? html`<th>Set %</th><th>Set tags</th><th></th>` : ""
  }</tr></thead>
<tbody>
${s.revisions.map((r) => revisionRow(s, r, edit))}
${edit ? latestRow(s) : ""}
</tbody>
</table>
${
  edit
    ? html`<p class="actions"><button type="submit" class="apply">Apply traffic</button>
<span class="hint">Percentages must add up to 100; the latest row follows new revisions.</span></p>`
    : html`<p class="hint readonly">Read-only: this token may not change traffic here.</p>`
}
</form>
</article>`;
}

function revisionRow(s: ServiceView, r: RevisionView, edit: boolean): Html {
  const spec = s.spec.get(r.name);
  return html`<tr data-revision="${r.name}">
<td class="name">${r.name}</td>
<td>${readyBadge(r.ready)}${r.failure ? html`<div class="failure">${r.failure}</div>` : ""}</td>
<td class="percent"><progress max="100" value="${r.percent}"></progress> <span class="pct">${r.percent}%</span></td>
<td class="tags">${r.tags.map((t) => html`<span class="tag">${t}</span> `)}</td>
<td class="instances">${r.actual ?? 0} / ${r.desired ?? 0}</td>
<td class="runs">${r.runs}</td>
${
  edit
    ? html`<td><input name="percent.${r.name}" value="${spec?.percent ?? ""}" inputmode="numeric" size="3" aria-label="percent for ${r.name}"></td>
<td><input name="tag.${r.name}" value="${spec?.tags.join(" ") ?? ""}" size="10" aria-label="tags for ${r.name}"></td>
<td><button type="submit" name="pin" value="${r.name}" class="pin">Pin</button></td>`
    : ""
}
</tr>`;
}

function latestRow(s: ServiceView): Html {
  const spec = s.spec.get(LATEST);
  return html`<tr data-revision="${LATEST}" class="latest">
<td class="name" colspan="6">latest revision (follows new revisions)</td>
<td><input name="percent.${LATEST}" value="${spec?.percent ?? ""}" inputmode="numeric" size="3" aria-label="percent for the latest revision"></td>
<td><input name="tag.${LATEST}" value="${spec?.tags.join(" ") ?? ""}" size="10" aria-label="tags for the latest revision"></td>
<td></td>
</tr>`;
}

function hostsTable(hosts: HostView[] | undefined): Html {
  if (hosts === undefined)
    return html`<p class="empty">Fleet state is not available to this API (its log says why).</p>`;
  if (hosts.length === 0) return html`<p class="empty">No hosts.</p>`;
  return html`${hosts.map(
    (h) => html`<article class="host" data-host="${h.id}">
<h3>${h.id} ${h.live ? (h.draining ? html`<span class="ready unknown">draining</span>` : html`<span class="ready ok">up</span>`) : html`<span class="ready bad">missing</span>`}</h3>
<p class="detail">${
      h.detail
        ? html`${h.detail.address} · ${h.detail.cpuMillis}m CPU · ${Math.round(h.detail.memoryBytes / 2 ** 20)} MiB · at most ${h.detail.maxInstances} instances · `
        : ""
    }${h.heartbeatAgeS === undefined ? "no heartbeat" : html`heartbeat ${h.heartbeatAgeS}s ago`}</p>
${
  h.instances.length === 0
    ? html`<p class="empty">No instances.</p>`
    : html`<table class="instances"><thead><tr><th>Instance</th><th>Revision</th><th>Runtime</th><th>Phase</th><th>Message</th></tr></thead><tbody>
${h.instances.map(
  (i) =>
    html`<tr data-instance="${i.id}"><td>${i.id}</td><td>${i.namespace}/${i.revision}</td><td>${i.runtime}</td><td class="phase phase-${i.phase}">${i.phase}</td><td>${i.reason ? html`${i.reason}: ` : ""}${i.message ?? ""}</td></tr>`,
)}
</tbody></table>`
}
</article>`,
  )}`;
}
