/**
 * Who may read `/_micropay/metrics`: without `metrics.token`, clients on this
 * machine that did not come through a proxy; with it, any client that sends it
 * as a bearer token, and no other. Healthz stays open. Real sockets: the
 * "other machine" is this one's own non-loopback address.
 */
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { config, get, startBank, startProxy, upstreamForFile } from './helpers.js';

const TOKEN = 'scrape-token-0123456789abcdef';

/** An IPv4 address of this machine other than loopback, if it has one. */
const outside = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;

const upstream = upstreamForFile();

describe('/_micropay/metrics without metrics.token', () => {
  it('answers this machine, and refuses what came through a proxy', async () => {
    const { url } = await startProxy(config(upstream().url), { billing: startBank().billing });
    const local = await get(`${url}/_micropay/metrics`);
    expect(local.status).toBe(200);
    expect(local.body).toContain('micropay_proxy_requests_total');
    const vias: Record<string, string>[] = [
      { 'X-Forwarded-For': '203.0.113.9' },
      { Forwarded: 'for=203.0.113.9' },
    ];
    for (const via of vias) {
      const r = await get(`${url}/_micropay/metrics`, via);
      expect(r.status).toBe(403);
      expect(r.json()).toEqual({
        error: 'forbidden',
        message: expect.stringMatching(/this machine only\. Set metrics\.token/),
      });
      expect(r.body).not.toContain('micropay_');
    }
    expect((await get(`${url}/_micropay/healthz`, { 'X-Forwarded-For': '203.0.113.9' })).status).toBe(200);
  });

  it.skipIf(outside === undefined)('refuses a client on another address', async () => {
    const { url } = await startProxy(config(upstream().url, { listen: '0.0.0.0:0' }), {
      billing: startBank().billing,
    });
    const port = new URL(url).port;
    const r = await get(`http://${outside}:${port}/_micropay/metrics`);
    expect(r.status).toBe(403);
    expect(r.json().error).toBe('forbidden');
    expect((await get(`http://${outside}:${port}/_micropay/healthz`)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${port}/_micropay/metrics`)).status).toBe(200);
  });
});

describe('/_micropay/metrics with metrics.token', () => {
  it('answers the bearer of the token, wherever it is, and no one else', async () => {
    const { url } = await startProxy(
      config(upstream().url, { listen: '0.0.0.0:0', metrics: { token: TOKEN } }),
      {
        billing: startBank().billing,
      },
    );
    const port = new URL(url).port;
    const hosts = outside === undefined ? ['127.0.0.1'] : ['127.0.0.1', outside];
    for (const host of hosts) {
      const at = `http://${host}:${port}/_micropay/metrics`;
      const ok = await get(at, { Authorization: `Bearer ${TOKEN}` });
      expect(ok.status).toBe(200);
      expect(ok.body).toContain('micropay_proxy_requests_total');
      expect((await get(at, { Authorization: `bearer ${TOKEN}` })).status).toBe(200);
      for (const auth of [
        undefined,
        `Bearer ${TOKEN}x`,
        `Bearer ${TOKEN.slice(1)}`,
        TOKEN,
        'Basic Zm9vOmJhcg==',
      ]) {
        const r = await get(at, auth === undefined ? {} : { Authorization: auth });
        expect(r.status).toBe(401);
        expect(r.headers['www-authenticate']).toBe('Bearer realm="micropay-proxy metrics"');
        expect(r.json()).toEqual({ error: 'unauthorized', message: expect.stringMatching(/metrics\.token/) });
        expect(r.body).not.toContain(TOKEN);
      }
    }
  });
});
