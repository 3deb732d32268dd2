// A real OpenID provider for the portal's single sign-on tests: panva's oidc-provider, configured
// from a JSON file the test writes, with a plain login form (its own interaction pages, as a
// company's provider has) and a few test-only hooks under /__test:
//
//   POST /__test/id-token   the next token response carries this ID token instead of the real
//                           one (a provider or network path the attacker controls);
//   GET  /__test/last       the last real ID token issued, and how many times the JWKS was read.
//
// Usage: node provider.mjs CONFIG.json. CONFIG: { issuer, port, keys_file, clients: [...],
// users: { login: { password, email, email_verified, groups } } }. The signing keys come from
// keys_file, or are made and written there (private JWKs and PKCS#8 PEM, so the tests can sign
// with them). Prints "ready PORT" once listening.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function keys() {
  if (existsSync(config.keys_file)) {
    return JSON.parse(readFileSync(config.keys_file, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
  const made = {
    keys: [jwk],
    pem: [privateKey.export({ format: 'pem', type: 'pkcs8' })],
  };
  writeFileSync(config.keys_file, JSON.stringify(made));
  return made;
}

const signing = keys();
const users = config.users;
let nextIdToken = null;
let lastIdToken = null;
let jwksReads = 0;

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
  })),
  jwks: { keys: signing.keys },
  cookies: { keys: ['consign-test-provider-cookie-key'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // Claims the scopes ask for go into the ID token, as most company providers do.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // A first-party client: no consent screen.
  async loadExistingGrant(ctx) {
    const clientId = ctx.oidc.client.clientId;
    const accountId = ctx.oidc.session.accountId;
    const existing = ctx.oidc.session.grantIdFor(clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    const grant = new ctx.oidc.provider.Grant({ clientId, accountId });
    grant.addOIDCScope('openid email groups');
    await grant.save();
    ctx.oidc.session.grantIdFor(clientId, grant.jti);
    return grant;
  },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        const out = { sub: id, email: user.email, email_verified: user.email_verified };
        if (user.groups) out.groups = user.groups;
        return out;
      },
    };
  },
});

async function body(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

const escape = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

function loginPage(uid, error) {
  return `<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Test provider</h1>${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Login <input id="login" name="login" autofocus></label>
<label>Password <input id="password" name="password" type="password"></label>
<button id="sign-in" type="submit">Sign in</button></form></body></html>`;
}

provider.use(async (ctx, next) => {
  const path = ctx.path;
  if (path === '/__test/id-token' && ctx.method === 'POST') {
    nextIdToken = (await body(ctx.req)).trim();
    ctx.body = { ok: true };
    return;
  }
  if (path === '/__test/last' && ctx.method === 'GET') {
    ctx.body = { id_token: lastIdToken, jwks_reads: jwksReads };
    return;
  }
  const login = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (login) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (!login[2]) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid);
      return;
    }
    const form = new URLSearchParams(await body(ctx.req));
    const user = users[form.get('login')];
    if (!user || user.password !== form.get('password')) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'wrong login or password');
      return;
    }
    const result = { login: { accountId: form.get('login') } };
    await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.respond = false;
    return;
  }
  if (path === '/jwks') jwksReads += 1;
  await next();
  if (path === '/token' && ctx.status === 200 && ctx.body && ctx.body.id_token) {
    lastIdToken = ctx.body.id_token;
    if (nextIdToken) {
      ctx.body = { ...ctx.body, id_token: nextIdToken };
      nextIdToken = null;
    }
  }
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`ready ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
