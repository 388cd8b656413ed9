// A stand-in for Cloudflare's D1 REST API (`/query` and `/raw`), answered from D1 bindings by workerd,
// for tests/support/rest_worker.py. Every value passes through workerd's SQLite and JavaScript as on
// Cloudflare: INTEGERs become JS numbers, BLOBs arrays of bytes, responses are JSON.stringify'd.
//
// Configuration (vars, written by rest_worker.py): ACCOUNT_ID, API_TOKEN, and DATABASES, a JSON object
// mapping database ids to binding names.
//
// The statement goes to the binding's session as the binding itself sends it (`_sendOrThrow` with the
// ROWS_AND_COLUMNS format, which is what `stmt.raw()` and `stmt.all()` use), so each answer carries D1's
// `meta` (rows_read, rows_written, ...) beside its rows. Simplified: a `sql` holding several statements
// runs them in one transaction, but only the last one's rows and meta come back (Cloudflare answers each).

const PREFIX = "/client/v4/accounts/";

function envelope(result, errors = []) {
  return { success: errors.length === 0, errors, messages: [], result };
}

function fail(status, code, message) {
  return Response.json(envelope(null, [{ code, message }]), { status });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/ready") return new Response("ready");
    const m = url.pathname.match(/^\/client\/v4\/accounts\/([^/]+)\/d1\/database\/([^/]+)\/(query|raw)\/?$/);
    if (!m) return fail(404, 7003, `Could not route to ${url.pathname}, perhaps your object identifier is invalid?`);
    const auth = request.headers.get("Authorization") || "";
    if (auth !== `Bearer ${env.API_TOKEN}`) return fail(auth ? 401 : 400, 10000, "Authentication error");
    const [, account, databaseId, action] = m;
    if (account !== env.ACCOUNT_ID) {
      return fail(403, 7403, "The given account is not valid or is not authorized to access this service");
    }
    const binding = JSON.parse(env.DATABASES)[databaseId];
    if (!binding) return fail(404, 7404, `The database ${databaseId} could not be found`);
    if (request.method !== "POST") return fail(405, 10405, `Method ${request.method} not allowed`);
    let body;
    try {
      body = await request.json();
    } catch {
      return fail(400, 7400, "The request is not valid JSON");
    }
    if (typeof body.sql !== "string" || !Array.isArray(body.params ?? [])) {
      return fail(400, 7400, "The request body needs a string 'sql' and a list 'params'");
    }
    const session = env[binding].alwaysPrimarySession;
    let answer;
    try {
      answer = await session._sendOrThrow("/query", body.sql, body.params ?? [], "ROWS_AND_COLUMNS");
    } catch (e) {
      return fail(400, 7500, String(e.message).replace(/^D1_ERROR: /, ""));
    }
    const results = (Array.isArray(answer) ? answer : [answer]).map((r) => {
      const { columns = [], rows = [] } = r.results ?? {};
      const out = action === "raw"
        ? { columns, rows }
        : rows.map((row) => Object.fromEntries(row.map((cell, i) => [columns[i], cell])));
      return { results: out, success: true, meta: r.meta };
    });
    return Response.json(envelope(results));
  },
};
