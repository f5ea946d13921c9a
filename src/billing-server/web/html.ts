/**
 * HTML of the account pages: escaping, the page frame, money and time as
 * people read them, and the per-day chart as inline SVG. Every value that
 * comes from the database or the request goes through `esc` (or `attr`);
 * pages are built from these strings only, never from a template language.
 */
import { formatMoney } from '../../protocol/money.js';

const ESC: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for element content and quoted attribute values. */
export function esc(v: string | number | null | undefined): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]!);
}

/** Money for people, e.g. `-0.02 USD`. */
export function money(amt: number, cur: string): string {
  return esc(formatMoney(amt, cur));
}

/** A Unix time as `2026-11-24 13:05 UTC` in a `<time>` element. */
export function time(t: number): string {
  const iso = new Date(t * 1000).toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC</time>`;
}

/** What the page frame needs. */
export interface Frame {
  title: string;
  /** The issuer id, shown in the header. */
  issuer: string;
  /** Signed-in user, for the header's sign-out form. */
  user?: { label: string; csrf: string };
  /** A status line shown at the top of the main content. */
  notice?: string;
  /** An error shown at the top of the main content (`role="alert"`). */
  error?: string;
}

/** The whole page around `body`. */
export function page(f: Frame, body: string): string {
  const user = f.user
    ? `<form method="post" action="/logout" class="signout"><span>Signed in as <strong>${esc(f.user.label)}</strong></span> ${csrfField(f.user.csrf)}<button type="submit">Sign out</button></form>`
    : '';
  const notice = f.notice ? `<p class="notice" role="status">${esc(f.notice)}</p>\n` : '';
  const error = f.error ? `<p class="error" role="alert">${esc(f.error)}</p>\n` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(f.title)} · micropay ${esc(f.issuer)}</title>
<link rel="stylesheet" href="/assets/account.css">
<script src="/assets/account.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><p class="brand">micropay billing · <span>${esc(f.issuer)}</span></p>${user}</header>
<main id="main">
${notice}${error}${body}
</main>
</body>
</html>
`;
}

/** The hidden CSRF field of a form. */
export function csrfField(token: string): string {
  return `<input type="hidden" name="csrf" value="${esc(token)}">`;
}

/** A `<dl>` of label/value pairs (values are HTML already). */
export function facts(rows: ReadonlyArray<readonly [string, string]>): string {
  return `<dl class="facts">${rows.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${v}</dd></div>`).join('')}</dl>`;
}

/** One day of the chart: `day` is `YYYY-MM-DD`, `amount` micro-units (>= 0). */
export interface DayAmount {
  day: string;
  amount: number;
}

/**
 * A bar chart of amounts per day, inline SVG with a title and description
 * for screen readers, each bar titled, and the figures in a table beside it.
 */
export function dayChart(id: string, caption: string, days: readonly DayAmount[], cur: string): string {
  const W = 640;
  const H = 180;
  const top = 16;
  const bottom = 24;
  const left = 8;
  const plotH = H - top - bottom;
  const max = Math.max(1, ...days.map((d) => d.amount));
  const slot = (W - 2 * left) / Math.max(1, days.length);
  const barW = Math.max(2, slot * 0.7);
  const total = days.reduce((s, d) => s + d.amount, 0);
  const bars = days
    .map((d, i) => {
      const h = d.amount > 0 ? Math.max(1, Math.round((d.amount / max) * plotH)) : 0;
      const x = (left + i * slot + (slot - barW) / 2).toFixed(1);
      const y = top + plotH - h;
      return `<rect x="${x}" y="${y}" width="${barW.toFixed(1)}" height="${h}" class="bar"><title>${esc(d.day)}: ${money(d.amount, cur)}</title></rect>`;
    })
    .join('');
  const first = days[0]?.day ?? '';
  const last = days[days.length - 1]?.day ?? '';
  const rows = days
    .filter((d) => d.amount > 0)
    .map((d) => `<tr><td>${esc(d.day)}</td><td class="num">${money(d.amount, cur)}</td></tr>`)
    .join('');
  return `<figure class="chart">
<figcaption id="${esc(id)}-title">${esc(caption)}</figcaption>
<svg viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${esc(id)}-title ${esc(id)}-desc">
<desc id="${esc(id)}-desc">${esc(`${days.length} days from ${first} to ${last}; total ${formatMoney(total, cur)}, most in one day ${formatMoney(max === 1 && total === 0 ? 0 : max, cur)}.`)}</desc>
<line x1="${left}" y1="${top + plotH}" x2="${W - left}" y2="${top + plotH}" class="axis"/>
${bars}
<text x="${left}" y="${H - 6}" class="label">${esc(first)}</text>
<text x="${W - left}" y="${H - 6}" class="label" text-anchor="end">${esc(last)}</text>
<text x="${left}" y="${top - 4}" class="label">${total > 0 ? money(max, cur) : 'nothing yet'}</text>
</svg>
<details><summary>Figures by day</summary>${rows ? `<table><thead><tr><th scope="col">Day (UTC)</th><th scope="col" class="num">Amount</th></tr></thead><tbody>${rows}</tbody></table>` : '<p>Nothing in this period.</p>'}</details>
</figure>`;
}
