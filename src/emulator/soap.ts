// The Partner SOAP API's login() and logout() at /services/Soap/u/{version}, as described in the
// SOAP API Developer Guide (sforce_api_calls_login.htm, LoginResult, SOAP faults). jsforce's
// conn.login(user, pass) without an OAuth client uses this. The envelope is read tolerantly with a
// small element extraction (no XML dependency); anything unreadable gets a SOAP fault, never a crash.

import type { Context, ReqInfo, Reply } from './http.ts';

const XML_TYPE = 'text/xml;charset=UTF-8';

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#\d{1,7}|[a-zA-Z]+);/g, (all, ent: string) => {
    if (ent[0] === '#') {
      const code = ent[1] === 'x' || ent[1] === 'X' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
      return Number.isFinite(code) && code >= 0 && code <= 0x10ffff ? String.fromCodePoint(code) : all;
    }
    return ENTITIES[ent] ?? all;
  });
}

export function escapeXml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c]};`,
  );
}

/** Text of the first element with this local name (any namespace prefix), decoded; or undefined. */
export function elementText(xml: string, localName: string): string | undefined {
  const re = new RegExp(
    `<(?:[A-Za-z_][\\w.-]*:)?${localName}(?:\\s[^>]*)?>([^<]*)</(?:[A-Za-z_][\\w.-]*:)?${localName}\\s*>`,
  );
  const m = re.exec(xml);
  return m ? decodeXml(m[1] ?? '') : undefined;
}

/** Local name of the first child element of soap Body: the operation. */
function operationOf(xml: string): string | undefined {
  const m = /<(?:[A-Za-z_][\w.-]*:)?Body(?:\s[^>]*)?>\s*<(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)/.exec(xml);
  return m?.[1];
}

function envelope(inner: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
    'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
    `<soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`
  );
}

/** SOAP faults are answered with HTTP 500, as Salesforce does. */
export function soapFault(code: string, message: string, faultType = 'UnexpectedErrorFault'): Reply {
  const body = envelope(
    '<soapenv:Fault>' +
      `<faultcode xmlns:sf="urn:fault.partner.soap.sforce.com">${escapeXml(code.includes(':') ? code : `sf:${code}`)}</faultcode>` +
      `<faultstring>${escapeXml(code.includes(':') ? message : `${code}: ${message}`)}</faultstring>` +
      (code.includes(':')
        ? ''
        : `<detail><sf:${faultType} xmlns:sf="urn:fault.partner.soap.sforce.com" xsi:type="sf:${faultType}">` +
          `<sf:exceptionCode>${escapeXml(code)}</sf:exceptionCode>` +
          `<sf:exceptionMessage>${escapeXml(message)}</sf:exceptionMessage>` +
          `</sf:${faultType}></detail>`) +
      '</soapenv:Fault>',
  );
  return { status: 500, headers: { 'content-type': XML_TYPE }, body };
}

export function handleSoap(ctx: Context, req: ReqInfo, version: string): Reply {
  if (req.method !== 'POST') {
    return soapFault('soapenv:Client', 'SOAP requests must use HTTP POST');
  }
  if (!ctx.apiVersions.includes(version)) {
    return soapFault('UNSUPPORTED_API_VERSION', `Invalid Api version specified on URL`);
  }
  const op = operationOf(req.body);
  if (op === 'login') return login(ctx, req, version);
  if (op === 'logout') {
    const sid = elementText(req.body, 'sessionId') ?? '';
    if (!ctx.sessions.validate(sid))
      return soapFault('INVALID_SESSION_ID', 'Invalid Session ID found in SessionHeader: Illegal Session');
    ctx.sessions.revoke(sid);
    return { status: 200, headers: { 'content-type': XML_TYPE }, body: envelope('<logoutResponse/>') };
  }
  if (!op) return soapFault('soapenv:Client', 'Unable to parse the SOAP envelope');
  return soapFault(
    'soapenv:Client',
    `No operation available for request {urn:partner.soap.sforce.com}${op}, please check the WSDL for the service.`,
  );
}

function login(ctx: Context, req: ReqInfo, version: string): Reply {
  const username = elementText(req.body, 'username') ?? '';
  const password = elementText(req.body, 'password') ?? '';
  const user = ctx.checkPassword(username, password);
  if (!user) {
    return soapFault(
      'INVALID_LOGIN',
      'Invalid username, password, security token; or user locked out.',
      'LoginFault',
    );
  }
  const session = ctx.sessions.create({ userId: user.userId, username: user.username });
  const x = (tag: string, v: string | number | boolean) => `<${tag}>${escapeXml(String(v))}</${tag}>`;
  const nil = (tag: string) => `<${tag} xsi:nil="true"/>`;
  const fullName = [user.firstName, user.lastName].filter(Boolean).join(' ');
  const result =
    '<loginResponse><result>' +
    x('metadataServerUrl', `${ctx.url}/services/Soap/m/${version}/${ctx.orgId}`) +
    x('passwordExpired', false) +
    x('sandbox', false) +
    x('serverUrl', `${ctx.url}/services/Soap/u/${version}/${ctx.orgId}`) +
    x('sessionId', session.token) +
    x('userId', user.userId) +
    '<userInfo>' +
    x('accessibilityMode', false) +
    x('chatterExternal', false) +
    x('currencySymbol', '$') +
    x('orgAttachmentFileSizeLimit', 5242880) +
    x('orgDefaultCurrencyIsoCode', 'USD') +
    nil('orgDefaultCurrencyLocale') +
    x('orgDisallowHtmlAttachments', false) +
    x('orgHasPersonAccounts', false) +
    x('organizationId', ctx.orgId) +
    x('organizationMultiCurrency', false) +
    x('organizationName', 'Emulated Org') +
    x('profileId', '00e5g000000AbcdAAC') +
    nil('roleId') +
    x('sessionSecondsValid', Math.floor(ctx.sessionTtlMs / 1000)) +
    nil('userDefaultCurrencyIsoCode') +
    x('userEmail', user.email) +
    x('userFullName', fullName) +
    x('userId', user.userId) +
    x('userLanguage', 'en_US') +
    x('userLocale', 'en_US') +
    x('userName', user.username) +
    x('userTimeZone', 'GMT') +
    x('userType', 'Standard') +
    x('userUiSkin', 'Theme3') +
    '</userInfo>' +
    '</result></loginResponse>';
  return { status: 200, headers: { 'content-type': XML_TYPE }, body: envelope(result) };
}
