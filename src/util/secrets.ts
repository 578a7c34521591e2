// The one list of secret key names, and the scrubber that removes secret values from text.

/** keys whose values are secrets wherever they appear: in the config, in logged objects */
export const SECRET_KEYS: readonly string[] = [
  'password',
  'pass',
  'clientSecret',
  'client_secret',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'securityToken',
  'privateKey',
  'assertion',
  'authorization',
  'Authorization',
  // http.sendApi.tokens[].token
  'token',
  // channels: the webhook signing key, and Slack/Teams webhook URLs (the URL is the credential)
  'secret',
  'webhookUrl',
];

/** what a secret is replaced by */
export const REDACTED = '[redacted]';

/** Replaces each secret, raw and as it appears inside a JSON string, with [redacted]. */
export function makeScrubber(secrets: string[]): (text: string) => string {
  const needles = new Set<string>();
  for (const s of secrets) {
    if (typeof s !== 'string' || s.length < 4) continue; // too short to scrub without mangling text
    needles.add(s);
    needles.add(JSON.stringify(s).slice(1, -1));
    needles.add(encodeURIComponent(s));
  }
  const list = [...needles].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (t) => t;
  return (text) => {
    let out = text;
    for (const n of list) if (out.includes(n)) out = out.split(n).join('[redacted]');
    return out;
  };
}
