// node oidc-provider as a test peer: a certified OpenID provider that the orchestrator's OIDC
// adapter is tested against (../../../shared/reference/identity-providers.md section 3 says why
// each setting is here). Version 9.13.3, pinned by package-lock.json: 9.x is the only line its
// author still maintains; it prints "Unsupported runtime" on Node 20 (it wants 22) and works there,
// as these tests show. Started by tests/peers/oidc/__init__.py; usable by hand:
//
//   node server.js --key K.pem --cert C.pem [--client-ca CA.pem] [--port 0] [--debug]
//   (the initial access token for dynamic registration comes from OIDC_PEER_INITIAL_ACCESS_TOKEN)
//
// One HTTPS listener serves everything (discovery, token, PAR, registration). It asks every client
// for a certificate and never refuses the handshake: the provider decides per client auth method.
// `--client-ca` names the bundle of CAs whose certificates tls_client_auth trusts; it is read at
// start and again on SIGHUP (new connections only), which prints `reloaded client-ca N`.
// Prints `listening https://127.0.0.1:PORT` once ready; exits when stdin closes or on SIGTERM.
// Every client authentication failure answers the same invalid_client: `--debug` (or
// DEBUG=oidc-provider:error) prints the real reason on stderr.

import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    key: { type: 'string' },
    cert: { type: 'string' },
    'client-ca': { type: 'string' },
    debug: { type: 'boolean', default: false },
  },
});
if (!args.key || !args.cert) {
  process.stderr.write('usage: node server.js --key K.pem --cert C.pem [--client-ca CA.pem] [--port N] [--debug]\n');
  process.exit(2);
}
if (args.debug) {
  // read by the `debug` package when oidc-provider is first imported, hence the dynamic import
  process.env.DEBUG = [process.env.DEBUG, 'oidc-provider:error'].filter(Boolean).join(',');
}
const { default: Provider } = await import('oidc-provider');

// ---- storage: unbounded, one Map per model -------------------------------------------------
// The built-in MemoryAdapter is one 1,000-entry LRU for every model: under token traffic it
// evicts idle clients and their registration access tokens. Entries here leave only when they
// expire (checked on read, swept every minute) or are destroyed.

const models = new Map(); // model name -> Map(id -> { payload, expiresAt })
const grants = new Map(); // grantId -> Set of [model, id]
const uids = new Map(); // session uid -> id
const userCodes = new Map(); // user code -> id

const nowSeconds = () => Math.floor(Date.now() / 1000);
const live = (entry) => entry !== undefined && (entry.expiresAt === undefined || entry.expiresAt > Date.now());

class UnboundedAdapter {
  constructor(model) {
    this.model = model;
    if (!models.has(model)) models.set(model, new Map());
    this.entries = models.get(model);
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.entries.set(id, { payload, expiresAt });
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
      grants.get(payload.grantId).add(`${this.model}\u0000${id}`);
    }
    if (this.model === 'Session' && payload.uid) uids.set(payload.uid, id);
    if (payload.userCode) userCodes.set(payload.userCode, id);
  }

  async find(id) {
    const entry = this.entries.get(id);
    return live(entry) ? entry.payload : undefined;
  }

  async findByUid(uid) {
    return uids.has(uid) ? this.find(uids.get(uid)) : undefined;
  }

  async findByUserCode(userCode) {
    return userCodes.has(userCode) ? this.find(userCodes.get(userCode)) : undefined;
  }

  async consume(id) {
    const entry = this.entries.get(id);
    if (live(entry)) entry.payload.consumed = nowSeconds();
  }

  async destroy(id) {
    const entry = this.entries.get(id);
    this.entries.delete(id);
    if (this.model === 'Session' && entry?.payload.uid) uids.delete(entry.payload.uid);
    if (entry?.payload.userCode) userCodes.delete(entry.payload.userCode);
  }

  async revokeByGrantId(grantId) {
    for (const member of grants.get(grantId) ?? []) {
      const [model, id] = member.split('\u0000');
      await new UnboundedAdapter(model).destroy(id);
    }
    grants.delete(grantId);
  }
}

setInterval(() => {
  for (const [model, entries] of models) {
    for (const [id, entry] of entries) {
      if (!live(entry)) new UnboundedAdapter(model).destroy(id);
    }
  }
}, 60_000).unref();

// ---- mTLS: the certificate comes from this process's own TLS socket ------------------------

function peerCertificate(ctx) {
  const cert = ctx.req.socket.getPeerX509Certificate?.();
  return cert ? cert.toString() : undefined; // PEM, as oidc-provider expects
}

// RFC 4514 order is the reverse of the certificate's; node prints the certificate's order, one
// attribute per line, values escaped as RFC 2253 says. Compare attribute by attribute.
function splitUnescaped(text, separator) {
  const parts = [];
  let current = '';
  for (let i = 0; i < text.length; i += 1) {
    if (text[i] === '\\' && i + 1 < text.length) {
      current += text[i] + text[i + 1];
      i += 1;
    } else if (text[i] === separator) {
      parts.push(current);
      current = '';
    } else {
      current += text[i];
    }
  }
  parts.push(current);
  return parts;
}

const ATTRIBUTE_ALIASES = { E: 'EMAILADDRESS', '1.2.840.113549.1.9.1': 'EMAILADDRESS', '2.5.4.5': 'SERIALNUMBER' };

function attribute(text) {
  const at = text.indexOf('=');
  const type = text.slice(0, at).trim().toUpperCase();
  const value = text.slice(at + 1).trim()
    .replace(/\\([0-9a-fA-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)))
    .replace(/\\(.)/g, '$1');
  return `${ATTRIBUTE_ALIASES[type] ?? type}=${value}`;
}

function subjectDnMatches(cert, expected) {
  const actual = new X509Certificate(cert).subject.split('\n').filter(Boolean).reverse().map(attribute);
  const wanted = splitUnescaped(expected, ',').flatMap((rdn) => splitUnescaped(rdn, '+')).map(attribute);
  return actual.length === wanted.length && actual.every((value, i) => value === wanted[i]);
}

// ---- the client-CA bundle, re-read on SIGHUP ----------------------------------------------

function tlsOptions() {
  const ca = args['client-ca'] ? readFileSync(args['client-ca'], 'utf8') : '';
  const count = (ca.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length;
  // `ca: []` (not undefined) when empty: node would otherwise trust its public root bundle
  return {
    options: {
      key: readFileSync(args.key), cert: readFileSync(args.cert), ca: count ? [ca] : [],
    },
    count,
  };
}

// ---- the provider ---------------------------------------------------------------------------

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'peer-signing', use: 'sig', alg: 'RS256' };
}

function configuration(initialAccessToken) {
  return {
    adapter: UnboundedAdapter,
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientAuthMethods: [
      'private_key_jwt',
      'client_secret_basic',
      'client_secret_post',
      'self_signed_tls_client_auth',
      'tls_client_auth',
    ],
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'RS384', 'PS256'],
      requestObjectSigningAlgValues: ['RS256', 'RS384', 'PS256'],
    },
    ttl: { ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // a client may ask for its client_id (as Keycloak's clientId lets it): how a test gets
      // the longest id the orchestrator accepts; otherwise 21 random characters, as nanoid's
      registration: {
        enabled: true,
        initialAccessToken,
        idFactory: (ctx) => (typeof ctx.oidc.body?.client_id === 'string'
          ? ctx.oidc.body.client_id : randomBytes(16).toString('base64url').slice(0, 21)),
      },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
      requestObjects: { enabled: true, requireSignedRequestObject: false },
      pushedAuthorizationRequests: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        selfSignedTlsClientAuth: true,
        tlsClientAuth: true,
        getCertificate: peerCertificate,
        certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => (
          property === 'tls_client_auth_subject_dn'
          && subjectDnMatches(peerCertificate(ctx), expected)
        ),
      },
    },
  };
}

// RFC 6749 section 5.2: a client that authenticated but may not use this grant type is an
// `unauthorized_client`. oidc-provider answers `invalid_request` there, which it also answers
// BEFORE authentication (a malformed assertion, two mechanisms at once), so a caller could not
// tell "authenticated, not allowed" from "not even looked at". This rewrites that one answer.
const GRANT_NOT_ALLOWED = 'requested grant type is not allowed for this client';

async function unauthorizedClient(ctx, next) {
  await next();
  if (ctx.status === 400 && ctx.body?.error === 'invalid_request'
      && ctx.body.error_description === GRANT_NOT_ALLOWED) {
    ctx.body = { ...ctx.body, error: 'unauthorized_client' };
  }
}

// ---- start ----------------------------------------------------------------------------------

let handler = (req, res) => { res.statusCode = 503; res.end(); };
const tls = tlsOptions();
const server = createServer(
  { ...tls.options, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
  (req, res) => handler(req, res),
);
server.keepAliveTimeout = 30_000;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), '127.0.0.1', resolve);
});
const issuer = `https://127.0.0.1:${server.address().port}`;
const provider = new Provider(
  issuer, configuration(process.env.OIDC_PEER_INITIAL_ACCESS_TOKEN || false),
);
provider.use(unauthorizedClient);
provider.on('server_error', (ctx, err) => {
  process.stderr.write(`server_error ${ctx.method} ${ctx.path}: ${err.stack}\n`);
});
handler = provider.callback();

process.on('SIGHUP', () => {
  try {
    const reloaded = tlsOptions();
    server.setSecureContext(reloaded.options);
    process.stdout.write(`reloaded client-ca ${reloaded.count}\n`);
  } catch (err) {
    process.stdout.write(`reload failed ${err.message}\n`);
  }
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();

process.stdout.write(`listening ${issuer}\n`);
