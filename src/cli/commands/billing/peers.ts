/**
 * `micropay billing peers ...` and `micropay billing settlement`: the
 * relationships with other billing servers (PROTOCOL.md section 9) of a
 * running billing server, over HTTP with the admin token. The leaves plug
 * into the admin command runner of `admin.ts` (help, parsing, connection).
 */
import type { Peer, SettlementPosition } from '../../../billing-client/types.js';
import { isId } from '../../../protocol/ids.js';
import { formatMoney } from '../../../protocol/money.js';
import type { Leaf, LeafContext } from './admin.js';
import { card, formatBps, formatTime, parseCommission, table, usage } from './format.js';

function out(ctx: LeafContext, text: string): void {
  ctx.io.stdout.write(text);
}

function json(ctx: LeafContext, value: unknown): void {
  ctx.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function issuerArg(v: string, command: string): string {
  const shown = JSON.stringify(v.slice(0, 64));
  if (!isId(v)) {
    throw usage(
      `${shown} is not an issuer id: use 1 to 128 characters [A-Za-z0-9._:-], like bank-b.`,
      command,
    );
  }
  return v;
}

function urlArg(v: string, command: string): string {
  let ok = false;
  try {
    const u = new URL(v);
    ok = u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    ok = false;
  }
  if (!ok)
    throw usage(
      `${JSON.stringify(v.slice(0, 100))} is not an http(s) URL like https://bank-b.example.`,
      command,
    );
  return v;
}

function tokenArg(v: string, command: string): string {
  // Never echo it: a token pasted in the wrong place is still a secret.
  if (!/^[\x21-\x7e]{1,512}$/.test(v)) {
    throw usage(
      'The token must be 1 to 512 printable characters without spaces (as the peer printed it).',
      command,
    );
  }
  return v;
}

function peerCard(p: Peer): string {
  return card([
    ['issuer', p.issuer],
    ['url', p.url],
    ['our token there', p.hasToken ? 'set' : 'not set (micropay billing peers token)'],
    [
      'interchange',
      p.feeBps === undefined ? '' : `${formatBps(p.feeBps)} (${p.feeBps} bps, kept here as issuer)`,
    ],
    ['keys fetched', p.keysFetched ? formatTime(p.keysFetched) : 'not yet'],
    ['token id', p.tokenId ?? ''],
  ]);
}

/** The settlement table: who owes whom, per peer and currency. */
export function settlementTable(positions: SettlementPosition[]): string {
  return table(
    ['PEER', 'CURRENCY', 'NET', 'PENDING', 'MEANING'],
    positions.map((p) => [
      p.peer,
      p.currency,
      formatMoney(p.net, p.currency),
      formatMoney(p.pending ?? 0, p.currency),
      p.net > 0 ? 'the peer owes us' : p.net < 0 ? 'we owe the peer' : 'even',
    ]),
    new Set([2, 3]),
  );
}

/** The admin groups of this file and their summaries, for `billing --help`. */
export const PEER_GROUPS: Record<string, string> = {
  peers: 'Register other billing servers whose credentials our merchants accept',
  settlement: 'Net positions with each peer per currency (what it owes us, what we owe it)',
};

/** The commands of this file. */
export const PEER_LEAVES: Leaf[] = [
  {
    name: 'peers add',
    synopsis: '<issuer> <url> [--peer-token TOKEN] [--fee RATE]',
    summary:
      "Register a peer billing server; prints the token the peer presents here (shown once: give it to the peer's operator)",
    details: `  <issuer>       the peer's issuer id, e.g. bank-b
  <url>          the peer's base URL, e.g. https://bank-b.example
  --peer-token TOKEN  the token the peer gave us to present there (or later: peers token)
  --fee RATE          interchange kept here, as issuer, on orders the peer claims: "1%" or "100bps" (default 0)

  Both operators run "peers add" for the other, then each sets the token the other printed with
  "peers token". Our key set then lists the peer's keys, so our merchants accept its credentials.`,
    // Not --token: that is the connection option carrying our admin token.
    options: { 'peer-token': { type: 'string' }, fee: { type: 'string' } },
    args: ['issuer', 'url'],
    async run(ctx) {
      const cmd = 'billing peers add';
      const issuer = issuerArg(ctx.args[0]!, cmd);
      const url = urlArg(ctx.args[1]!, cmd);
      const input: { issuer: string; url: string; token?: string; feeBps?: number } = { issuer, url };
      const token = ctx.values['peer-token'];
      if (typeof token === 'string') input.token = tokenArg(token, cmd);
      const fee = ctx.values.fee;
      if (typeof fee === 'string') input.feeBps = parseCommission(fee, cmd);
      const added = await ctx.client().admin.addPeer(input);
      if (ctx.json) {
        json(ctx, added);
        return;
      }
      // The one deliberate print of a peer token: the operator must hand it to the peer.
      out(
        ctx,
        `Registered peer "${issuer}".\n${peerCard(added.peer)}\n` +
          `Token ${issuer} presents here: ${added.token}\n` +
          `Give it to ${issuer}'s operator, who sets it there with: micropay billing peers token <our issuer id> <token>\n` +
          'It is shown only this once.\n',
      );
    },
  },
  {
    name: 'peers list',
    synopsis: '',
    summary: 'List the peers, their URLs, interchange fees and when their keys were last fetched',
    args: [],
    async run(ctx) {
      const peers = await ctx.client().admin.listPeers();
      if (ctx.json) json(ctx, { peers });
      else if (peers.length === 0) out(ctx, 'No peers.\n');
      else
        out(
          ctx,
          table(
            ['ISSUER', 'URL', 'OUR TOKEN', 'INTERCHANGE', 'KEYS FETCHED'],
            peers.map((p) => [
              p.issuer,
              p.url,
              p.hasToken ? 'set' : 'not set',
              p.feeBps === undefined ? '' : formatBps(p.feeBps),
              p.keysFetched ? formatTime(p.keysFetched) : 'not yet',
            ]),
            new Set([3]),
          ),
        );
    },
  },
  {
    name: 'peers token',
    synopsis: '<issuer> <token>',
    summary: 'Set the token we present at the peer (the one its operator printed with "peers add")',
    args: ['issuer', 'token'],
    async run(ctx) {
      const cmd = 'billing peers token';
      const issuer = issuerArg(ctx.args[0]!, cmd);
      const p = await ctx.client().admin.updatePeer(issuer, { token: tokenArg(ctx.args[1]!, cmd) });
      if (ctx.json) json(ctx, { peer: p });
      else out(ctx, `Our token at "${p.issuer}" is set; claims go there with it.\n${peerCard(p)}`);
    },
  },
  {
    name: 'peers update',
    synopsis: '<issuer> [--peer-url URL] [--fee RATE]',
    summary: "Change a peer's URL or the interchange fee kept here",
    details: `  --peer-url URL   the peer's new base URL (its keys are fetched again from there)
  --fee RATE       interchange kept here, as issuer: "1%" or "100bps"`,
    // Not --url: that is the connection option naming our own billing server.
    options: { 'peer-url': { type: 'string' }, fee: { type: 'string' } },
    args: ['issuer'],
    async run(ctx) {
      const cmd = 'billing peers update';
      const issuer = issuerArg(ctx.args[0]!, cmd);
      const patch: { url?: string; feeBps?: number } = {};
      const url = ctx.values['peer-url'];
      if (typeof url === 'string') patch.url = urlArg(url, cmd);
      const fee = ctx.values.fee;
      if (typeof fee === 'string') patch.feeBps = parseCommission(fee, cmd);
      if (Object.keys(patch).length === 0) throw usage('Give --peer-url URL, --fee RATE or both.', cmd);
      const p = await ctx.client().admin.updatePeer(issuer, patch);
      if (ctx.json) json(ctx, { peer: p });
      else out(ctx, `Peer "${p.issuer}" changed.\n${peerCard(p)}`);
    },
  },
  {
    name: 'peers remove',
    synopsis: '<issuer>',
    summary: 'Remove a peer: its credentials stop being accepted here; claims already owed still settle',
    args: ['issuer'],
    async run(ctx) {
      const issuer = issuerArg(ctx.args[0]!, 'billing peers remove');
      await ctx.client().admin.removePeer(issuer);
      if (ctx.json) json(ctx, { removed: issuer });
      else
        out(
          ctx,
          `Removed peer "${issuer}": its keys are no longer published or trusted here. Claims already owed either way still settle.\n`,
        );
    },
  },
  {
    name: 'settlement',
    synopsis: '',
    summary:
      'Net position with each peer per currency (NET > 0: the peer owes us); PENDING: claims it has not acknowledged yet',
    args: [],
    async run(ctx) {
      const positions = await ctx.client().admin.settlement();
      if (ctx.json) json(ctx, { positions });
      else if (positions.length === 0) out(ctx, 'No positions with peers yet.\n');
      else out(ctx, settlementTable(positions));
    },
  },
];
