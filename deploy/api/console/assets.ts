/**
 * The console's script and style, served from the API itself (script-src and
 * style-src 'self': no inline code, no build step). The script only polls
 * /console/rates and draws one sparkline per service; everything else is
 * plain HTML forms. It writes text with textContent, never as markup.
 */

/** Samples kept per sparkline (one per poll). */
const POINTS = 60;
const POLL_MS = 2_000;

export const CONSOLE_JS = `"use strict";
(() => {
  const POINTS = ${POINTS};
  const history = new Map();
  const SVG = "http://www.w3.org/2000/svg";

  function draw(svg, values) {
    const max = Math.max(1, ...values);
    const step = 120 / (POINTS - 1);
    const offset = POINTS - values.length;
    const points = values
      .map((v, i) => ((offset + i) * step).toFixed(1) + "," + (23 - (v / max) * 22).toFixed(1))
      .join(" ");
    let line = svg.querySelector("polyline");
    if (!line) {
      line = document.createElementNS(SVG, "polyline");
      svg.appendChild(line);
    }
    line.setAttribute("points", points);
  }

  async function poll() {
    let rates;
    try {
      const res = await fetch("/console/rates", { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) {
        location.assign("/console/login");
        return;
      }
      if (!res.ok) return;
      rates = await res.json();
    } catch {
      return;
    }
    for (const svg of document.querySelectorAll("svg.spark[data-service]")) {
      const ref = svg.dataset.service;
      const rate = typeof rates[ref] === "number" ? rates[ref] : 0;
      const values = history.get(ref) || [];
      values.push(rate);
      if (values.length > POINTS) values.shift();
      history.set(ref, values);
      draw(svg, values);
    }
    for (const label of document.querySelectorAll(".rps[data-service]")) {
      const rate = rates[label.dataset.service];
      label.textContent = (typeof rate === "number" ? rate.toFixed(1) : "0.0") + " req/s";
    }
  }

  // Only the overview has sparklines (the login page must not poll: it would loop on 401).
  if (document.querySelector("svg.spark[data-service]")) {
    poll();
    setInterval(poll, ${POLL_MS});
  }
})();
`;

export const CONSOLE_CSS = `
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1.5em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
header .who { flex: 1; opacity: .8; }
main { padding: 1em 1.5em; }
main.login { max-width: 28em; margin: 4em auto; background: #fff; border-radius: 6px; padding: 2em; }
main.login input { width: 100%; box-sizing: border-box; margin: .5em 0 1em; padding: .4em; }
h2 { border-bottom: 1px solid #ccd; padding-bottom: .2em; }
article { background: #fff; border-radius: 6px; padding: .5em 1em 1em; margin-bottom: 1em; box-shadow: 0 1px 2px #0002; }
h3 { margin: .4em 0; }
h3 .ns { color: #667; font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #eef; vertical-align: top; }
th { font-weight: 600; color: #556; font-size: .9em; }
.ready { font-size: .75em; padding: .1em .5em; border-radius: 1em; font-weight: 600; }
.ready.ok { background: #d8f5df; color: #11632a; }
.ready.bad { background: #fde0e0; color: #8f1717; }
.ready.unknown { background: #eee; color: #555; }
.failure, .message, .error { color: #8f1717; white-space: pre-wrap; overflow-wrap: anywhere; }
.error { background: #fde0e0; padding: .5em 1em; border-radius: 4px; }
.tag { background: #e4ecff; border-radius: 3px; padding: 0 .4em; }
.runs { font-family: ui-monospace, monospace; font-size: .85em; overflow-wrap: anywhere; }
.hint { color: #667; font-size: .85em; }
.spark { vertical-align: middle; background: #f0f3f8; }
.spark polyline { fill: none; stroke: #2b6cd4; stroke-width: 1.5; }
.rate { margin: .2em 0; }
progress { width: 5em; }
dd { margin: 0 0 .3em 1em; overflow-wrap: anywhere; }
dt { font-family: ui-monospace, monospace; }
`;
