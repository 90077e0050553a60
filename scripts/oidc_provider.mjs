// A real OpenID Connect provider for the tests and `make run` (npm's oidc-provider, pinned in
// package.json): its own development login and consent pages, PKCE S256, and a few clients that
// misbehave on purpose so that the portal's checks of the ID token can be tested.
//
//   node scripts/oidc_provider.mjs --port 9400 [--issuer http://localhost:9400] [--host 127.0.0.1]
//
// Development only: the login page accepts any login and password (see ACCOUNTS), and all state
// (sessions, codes, grants) lives in memory until the process ends.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import { SignJWT, decodeJwt, decodeProtectedHeader } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9400' },
    issuer: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' }, // as the portal's own stacks: loopback only
  },
});
const port = Number(args.port);
const issuer = args.issuer ?? `http://localhost:${port}`;

// Our own signing key rather than oidc-provider's built-in development key, so that the
// misbehaving clients below can re-sign ID tokens with it. The second key has the same kid but is
// never published: an ID token signed with it must fail the relying party's JWKS check.
const KID = 'portal-dev-rs256';
const newKey = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const signingKey = newKey();
const strangerKey = newKey();

// Login (as typed on the dev login page, lowercased) -> account. Any other login is accepted too,
// as its own account, so that tests can make fresh external users at will.
const ACCOUNTS = {
  'oidc-user@example.com': { sub: 'oidc-user-1', given_name: 'Olive', family_name: 'Ida' },
  'oidc-mfa@example.com': { sub: 'oidc-mfa-1', given_name: 'Mfa', family_name: 'User', amr: ['pwd', 'mfa'] },
  'oidc-unverified@example.com': {
    sub: 'oidc-unverified-1', given_name: 'Una', family_name: 'Verified', email_verified: false,
  },
};
const bySub = new Map();
function accountFor(rawLogin) {
  const login = rawLogin.trim().toLowerCase();
  const local = login.split('@')[0] || login;
  const account = {
    // A stable subject that is not the email, as with real providers.
    sub: `oidc-${createHash('sha256').update(login).digest('hex').slice(0, 16)}`,
    given_name: local.charAt(0).toUpperCase() + local.slice(1),
    family_name: 'Example',
    email_verified: true,
    amr: ['pwd'],
    ...ACCOUNTS[login],
    email: login,
  };
  bySub.set(account.sub, account);
  return account;
}
Object.keys(ACCOUNTS).forEach(accountFor);

const client = (client_id) => ({
  client_id,
  client_secret: 'portal-secret',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  id_token_signed_response_alg: 'RS256',
  // Nominal only: redirectUriAllowed below accepts the callback of any local portal stack.
  redirect_uris: ['http://localhost:9000/signin/external/example/callback'],
});

const provider = new Provider(issuer, {
  clients: ['portal', 'portal-wrong-aud', 'portal-expired', 'portal-bad-sig'].map(client),
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys: [{ ...signingKey.export({ format: 'jwk' }), kid: KID, use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  claims: {
    // amr in every ID token, not only where the claims parameter asks for it; its value is the
    // session's (see interactionFinished below).
    openid: ['sub', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['given_name', 'family_name', 'name'],
  },
  // Put the email and profile claims in the ID token itself, not only at the userinfo endpoint
  // (the relying party reads them from the ID token).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  // Given only to silence oidc-provider's "define the expiration" warnings: its defaults, but a
  // day rather than two weeks for sessions and grants.
  ttl: {
    AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 3600, Session: 86400, Grant: 86400,
  },
  async findAccount(ctx, sub) {
    const account = bySub.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const { amr, ...claims } = account;
        return { ...claims, name: `${account.given_name} ${account.family_name}` };
      },
    };
  },
});

// The dev login form finishes the interaction with the login as the account id and no amr. Swap
// in the account's stable subject and its amr (which oidc-provider only takes from the login
// result: the ID token's amr is the session's, whatever findAccount's claims say). The pages stay
// oidc-provider's own.
const interactionFinished = provider.interactionFinished.bind(provider);
provider.interactionFinished = (req, res, result, options) => {
  if (result?.login?.accountId) {
    const account = accountFor(result.login.accountId);
    result = { ...result, login: { ...result.login, accountId: account.sub, amr: account.amr } };
  }
  return interactionFinished(req, res, result, options);
};

// The local portal stacks run on random ports: accept any loopback portal callback.
const CALLBACK_PATH = /^\/signin\/external\/[a-z0-9-]+\/callback$/;
provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
  let url;
  try { url = new URL(value); } catch { return false; }
  return url.protocol === 'http:' && ['localhost', '127.0.0.1'].includes(url.hostname)
    && !url.username && !url.password && !url.search && !url.hash && CALLBACK_PATH.test(url.pathname);
};

// The misbehaving clients: a real token response whose ID token is then spoilt, one way each.
const now = () => Math.floor(Date.now() / 1000);
const SPOIL = {
  'portal-wrong-aud': (claims) => [{ ...claims, aud: 'someone-else' }, signingKey],
  // Expired an hour ago (keeping the token's lifetime), so no clock-skew allowance saves it.
  'portal-expired': (claims) => {
    const shift = claims.exp - (now() - 3600);
    return [{ ...claims, iat: claims.iat - shift, exp: claims.exp - shift }, signingKey];
  },
  'portal-bad-sig': (claims) => [claims, strangerKey],
};
provider.use(async (ctx, next) => {
  await next();
  const idToken = ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token;
  if (!idToken) return;
  const claims = decodeJwt(idToken);
  const spoil = SPOIL[claims.aud];
  if (!spoil) return;
  const [spoilt, key] = spoil(claims);
  ctx.body = {
    ...ctx.body,
    id_token: await new SignJWT(spoilt).setProtectedHeader(decodeProtectedHeader(idToken)).sign(key),
  };
});

const server = provider.listen(port, args.host, () => console.log(`oidc-provider listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)).closeAllConnections());
}
