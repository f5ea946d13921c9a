/**
 * micropay-proxy serving HTTPS (`tls: { cert, key }`, self-signed by the
 * openssl command line): the upstream sees `X-Forwarded-Proto: https`, and a
 * reload swaps in new certificate files for new connections.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  closeProxies,
  config,
  startBank,
  startProxy,
  startUpstream,
  tempDir,
  type Upstream,
} from './helpers.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!hasOpenssl())('micropay-proxy over TLS', () => {
  const tmp = tempDir('micropay-proxy-tls-');
  let up: Upstream;

  function selfSigned(name: string): { cert: string; key: string } {
    const cert = join(tmp.dir, `${name}.crt`);
    const key = join(tmp.dir, `${name}.key`);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        `/CN=${name}`,
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    return { cert, key };
  }

  function fetchCert(url: string): Promise<{ status: number; subject: string; body: string }> {
    return new Promise((resolve, reject) => {
      https
        .get(`${url}/secure`, { rejectUnauthorized: false, agent: false }, (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
          });
          res.on('end', () => {
            const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
            resolve({ status: res.statusCode ?? 0, subject: peer.subject.CN as string, body });
          });
        })
        .on('error', reject);
    });
  }

  beforeAll(async () => {
    up = await startUpstream();
  });
  afterAll(async () => {
    await closeProxies();
    await up.close();
    tmp.remove();
  });

  it('serves HTTPS, forwards X-Forwarded-Proto https, and reloads its certificate', async () => {
    const first = selfSigned('first.test');
    const { proxy, url } = await startProxy(config(up.url, { tls: first }), { billing: startBank().billing });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const a = await fetchCert(url);
    expect(a).toMatchObject({ status: 200, subject: 'first.test' });
    expect(JSON.parse(a.body).headers['x-forwarded-proto']).toBe('https');
    expect(new X509Certificate(readFileSync(first.cert)).subject).toContain('first.test');

    const second = selfSigned('second.test');
    await proxy.reload(config(up.url, { tls: second }));
    expect((await fetchCert(url)).subject).toBe('second.test');
  });
});
