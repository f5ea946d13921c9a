/**
 * The account pages' one stylesheet and one small script, served from
 * `/assets/` so the Content-Security-Policy can forbid inline styles and
 * scripts. The script only asks before forms marked `data-confirm` are sent;
 * every page works without it.
 */

/** `/assets/account.css`: plain, readable, high contrast, visible focus. */
export const ACCOUNT_CSS = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a1a1a;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;justify-content:space-between;align-items:center;padding:.75rem 1.25rem;border-bottom:1px solid #ccc;background:#f5f5f5}
.brand{margin:0;font-weight:600}
main{max-width:64rem;margin:0 auto;padding:1rem 1.25rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem}
h2{font-size:1.25rem;margin:2rem 0 .75rem}
a{color:#0b4fb3}
a:focus,button:focus,input:focus,select:focus,summary:focus{outline:3px solid #1a5fd0;outline-offset:2px}
.skip{position:absolute;left:-999px}
.skip:focus{left:.5rem;top:.5rem;background:#fff;padding:.25rem .5rem}
button{font:inherit;padding:.35rem .9rem;border-radius:.3rem;border:1px solid #0b3f8f;background:#0b4fb3;color:#fff;cursor:pointer}
button.danger{background:#a4161a;border-color:#7a0f12}
button.plain{background:#fff;color:#0b3f8f}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password],select{font:inherit;padding:.4rem .5rem;border:1px solid #767676;border-radius:.25rem;min-width:16rem;max-width:100%}
.hint{color:#4a4a4a;font-size:.9rem;margin:.25rem 0}
.notice{background:#e8f3ea;border:1px solid #2e7d32;padding:.5rem .75rem;border-radius:.3rem}
.error{background:#fdecea;border:1px solid #a4161a;color:#7a0f12;padding:.5rem .75rem;border-radius:.3rem}
.signout{display:flex;gap:.75rem;align-items:center;margin:0}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.75rem;margin:0}
.facts div{border:1px solid #ccc;border-radius:.3rem;padding:.5rem .75rem}
.facts dt{font-size:.85rem;color:#4a4a4a}
.facts dd{margin:0;font-size:1.15rem;font-weight:600}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f5f5f5}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.neg{color:#8a1116}
.status-disabled{color:#8a1116;font-weight:600}
.inline{display:inline;margin:0}
.pager{display:flex;gap:1rem;margin:.75rem 0}
.chart svg{width:100%;height:auto;max-height:14rem;border:1px solid #ddd;border-radius:.3rem;background:#fafafa}
.chart .bar{fill:#0b4fb3}
.chart .axis{stroke:#767676}
.chart .label{font-size:12px;fill:#333}
figcaption{font-weight:600;margin-bottom:.25rem}
code{background:#f0f0f0;padding:.05rem .3rem;border-radius:.2rem;word-break:break-all}
.filters{display:flex;flex-wrap:wrap;gap:0 1rem;align-items:end}
.filters label{margin-top:0}
`;

/** `/assets/account.js`: a confirm step for forms marked `data-confirm`. */
export const ACCOUNT_JS = `document.addEventListener('submit', function (e) {
  var f = e.target;
  var q = f && f.getAttribute && f.getAttribute('data-confirm');
  if (q && !window.confirm(q)) e.preventDefault();
});
`;
