// A stand-in for Cloudflare's D1 REST API (`/query` and `/raw`), answered from D1 bindings by workerd,
// for tests/support/rest_worker.py. Every value passes through workerd's SQLite and JavaScript as on
// Cloudflare: INTEGERs become JS numbers, BLOBs arrays of bytes, responses are JSON.stringify'd.
//
// Configuration (vars, written by rest_worker.py): ACCOUNT_ID, API_TOKEN, and DATABASES, a JSON object
// mapping database ids to binding names.
//
// The statements go to the binding's session as the binding itself sends a batch (`_sendOrThrow` with the
// ROWS_AND_COLUMNS format, which is what `stmt.raw()`, `stmt.all()` and `db.batch()` use), so they run in
// one transaction and each answer carries D1's `meta` (rows_read, rows_written, ...) beside its rows.
// A `sql` holding several statements is split here (quotes, comments and trigger bodies understood, as
// sqlite3_complete() does) and, as on Cloudflare, only the last statement takes `params`. The body may
// also be `{"batch": [{"sql", "params"}, ...]}`, one statement each.

// Statements of `sql`, split at semicolons outside quotes, comments and CREATE TRIGGER ... END bodies.
function splitStatements(sql) {
  const statements = [];
  let start = 0, i = 0, words = [];
  const word = /[A-Za-z_][A-Za-z0-9_$]*/y;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c;
      i = sql.indexOf(close, i + 1);
      while (i !== -1 && close !== "]" && sql[i + 1] === close) i = sql.indexOf(close, i + 2);
      i = i === -1 ? sql.length : i + 1;
      words.push("");
    } else if (c === "-" && sql[i + 1] === "-") {
      i = sql.indexOf("\n", i);
      i = i === -1 ? sql.length : i + 1;
    } else if (c === "/" && sql[i + 1] === "*") {
      i = sql.indexOf("*/", i + 2);
      i = i === -1 ? sql.length : i + 2;
    } else if (c === ";") {
      const trigger = words.slice(0, 4).includes("TRIGGER") && words[0] === "CREATE";
      i += 1;
      // A trigger ends at "; END ;" (a CASE ... END inside it does not end it), as in sqlite3_complete().
      if (!trigger || (words[words.length - 1] === "END" && words[words.length - 2] === ";")) {
        statements.push(sql.slice(start, i));
        start = i;
        words = [];
      } else {
        words.push(";");
      }
    } else {
      word.lastIndex = i;
      const m = word.exec(sql);
      if (m) {
        words.push(m[0].toUpperCase());
        i += m[0].length;
      } else {
        if (!/\s/.test(c)) words.push(c);
        i += 1;
      }
    }
  }
  if (sql.slice(start).trim()) statements.push(sql.slice(start));
  return statements;
}

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
    const queries = Array.isArray(body.batch) ? body.batch : [body];
    if (!queries.length || !queries.every((q) => typeof q?.sql === "string" && Array.isArray(q.params ?? []))) {
      return fail(400, 7400, "The request body needs a string 'sql' and a list 'params'");
    }
    const sqls = [], params = [];
    for (const query of queries) {
      const statements = splitStatements(query.sql);
      statements.forEach((statement, n) => {
        sqls.push(statement);
        params.push(n === statements.length - 1 ? query.params ?? [] : []);
      });
    }
    const session = env[binding].alwaysPrimarySession;
    let answer;
    try {
      answer = await session._sendOrThrow("/query", sqls, params, "ROWS_AND_COLUMNS");
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
