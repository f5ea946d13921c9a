/**
 * The HTML paywall page a browser gets with a 402: the price, the title, the
 * merchant, and how to pay. Every interpolated value is escaped; the offer is
 * embedded as JSON in a non-executable script element for the browser wallet.
 */
import type { Offer } from '../protocol/messages.js';
import { formatMoney } from '../protocol/money.js';

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}

/** Options of the paywall page. */
export interface PaywallOptions {
  /** URL of the browser wallet script. Default `/_micropay/wallet.js`. */
  walletScript?: string;
  description?: string;
  /** The error code when this is not the first 402 (e.g. `replayed_order`). */
  error?: string;
  message?: string;
}

/** Renders the paywall page for an offer. */
export function renderPaywall(offer: Offer, o: PaywallOptions = {}): string {
  const price = formatMoney(offer.amt, offer.cur);
  const title = offer.title ?? offer.res;
  const who = offer.name ?? offer.mer;
  // JSON in a script element: escape "<" so "</script>" cannot end it early.
  const json = JSON.stringify(offer).replace(/</g, '\\u003c');
  const hours =
    offer.dur >= 3600
      ? `${Math.round(offer.dur / 360) / 10} hours`
      : `${Math.max(1, Math.round(offer.dur / 60))} minutes`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Payment required: ${escapeHtml(title)}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#222}
.price{font-size:2rem;font-weight:600;margin:.5rem 0}
.box{border:1px solid #ddd;border-radius:.5rem;padding:1.5rem}
.err{color:#a00}
code{background:#f4f4f4;padding:.1rem .3rem;border-radius:.2rem}
button{font:inherit;padding:.5rem 1.2rem;border-radius:.4rem;border:1px solid #246;background:#246;color:#fff;cursor:pointer}
</style>
</head>
<body>
<main class="box" data-micropay-paywall>
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(who)} charges for this page.</p>
<p class="price" data-micropay-price>${escapeHtml(price)}</p>
${o.description ? `<p>${escapeHtml(o.description)}</p>\n` : ''}${o.error ? `<p class="err" role="alert">${escapeHtml(o.message ?? o.error)}</p>\n` : ''}<p>After paying, you can open it again for ${escapeHtml(hours)} without paying twice.</p>
<h2>How to pay</h2>
<ol>
<li>Get a micropay wallet from a billing server that ${escapeHtml(who)} accepts: ${offer.accepts.map((a) => `<code>${escapeHtml(a)}</code>`).join(', ')}.</li>
<li>With the micropay wallet in this browser, press <button type="button" data-micropay-pay>Pay ${escapeHtml(price)}</button>.</li>
<li>From a terminal: <code>micropay wallet get ${escapeHtml(offer.res.slice(offer.res.indexOf(' ') + 1))}</code> against this site.</li>
</ol>
</main>
<script type="application/json" id="micropay-offer">${json}</script>
<script src="${escapeHtml(o.walletScript ?? '/_micropay/wallet.js')}" defer data-micropay-wallet></script>
</body>
</html>
`;
}

/** True when the request's `Accept` prefers HTML over JSON (a browser navigating). */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  let html = -1;
  let json = -1;
  for (const part of accept.split(',')) {
    const [type, ...params] = part.trim().toLowerCase().split(';');
    const qp = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (type === 'text/html' || type === 'application/xhtml+xml') html = Math.max(html, q);
    else if (type === 'application/json') json = Math.max(json, q);
  }
  return html > 0 && html > json;
}
