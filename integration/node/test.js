'use strict';
// node-postgres and mysql2 through dbproxy. Run by integration/node_test.go,
// which starts the servers and the proxies, creates the tables and passes
// their addresses in DBPROXY_NODE (JSON):
//
//   { "pg":    { "direct": url, "plain": url, "enc": url },
//     "mysql": { "direct": cfg, "plain": cfg, "enc": cfg } }
//
// "plain" is a relaying listener, "enc" an encrypting one (node_enc's
// email, doc and age are encrypted; node_plain is not). The Go test then
// reads node_enc directly to check that only ciphertext was stored.

const assert = require('node:assert/strict');
const pg = require('pg');
const mysql = require('mysql2/promise');

const cfg = JSON.parse(process.env.DBPROXY_NODE);

// A promise that never settles lets node exit with status 0 before the end:
// only a run that reaches the end succeeds.
process.exitCode = 1;

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function log(...args) {
  console.log(...args);
}

// quickConnectEnd opens a connection and ends it at once (node-postgres
// then sends Terminate before its startup packet) and returns how that
// went, to compare with the server's own behaviour.
async function pgQuickConnectEnd(url) {
  const c = new pg.Client({ connectionString: url });
  const errors = [];
  c.on('error', (e) => errors.push(`error event: ${e.code || e.message}`));
  const connecting = c.connect().then(
    () => 'connected',
    (e) => `connect failed: ${e.code || 'no SQLSTATE'}`
  );
  await c.end();
  // connect() may never settle once end() closed the socket under it.
  const outcome = await Promise.race([connecting, sleep(1000).then(() => 'connect never settled')]);
  await sleep(100);
  return [outcome, ...errors].join('; ');
}

async function pgChecks(name, url, encrypted, directQuick) {
  const quick = await pgQuickConnectEnd(url);
  assert.equal(quick, directQuick, `${name}: connect+end at once`);
  assert.ok(!quick.includes('08P01'), `${name}: connect+end: ${quick}`);

  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    let r = await c.query('SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1);
    r = await c.query('SELECT $1::int + 1 AS n', [41]);
    assert.equal(r.rows[0].n, 42);
    for (let i = 0; i < 2; i++) {
      r = await c.query({ name: 'double', text: 'SELECT $1::int * 2 AS n', values: [21] });
      assert.equal(r.rows[0].n, 42);
    }
    const base = encrypted ? 100 : 0;
    await c.query('INSERT INTO node_plain (id, doc, note) VALUES ($1, $2, $3)', [base + 1, { a: [1, 2] }, 'x']);
    r = await c.query('SELECT doc, note FROM node_plain WHERE id = $1', [base + 1]);
    assert.deepEqual(r.rows[0], { doc: { a: [1, 2] }, note: 'x' });

    if (encrypted) {
      await c.query({
        name: 'ins',
        text: 'INSERT INTO node_enc (id, email, doc, age) VALUES ($1, $2, $3, $4)',
        values: [1, 'ann@node.example', { k: 'secret-one' }, 41],
      });
      await c.query(`INSERT INTO node_enc (id, email, doc, age) VALUES (2, 'bob@node.example', '{"k": "secret-two"}', 42)`);
      r = await c.query('SELECT id, email, doc, age FROM node_enc WHERE email = $1', ['ann@node.example']);
      assert.deepEqual(r.rows, [{ id: 1, email: 'ann@node.example', doc: { k: 'secret-one' }, age: 41 }]);
      r = await c.query(`SELECT id, doc, age FROM node_enc WHERE email = 'bob@node.example'`);
      assert.deepEqual(r.rows, [{ id: 2, doc: { k: 'secret-two' }, age: 42 }]);
      r = await c.query({ name: 'all', text: 'SELECT id, email, age FROM node_enc ORDER BY id', values: [] });
      assert.deepEqual(r.rows.map((x) => [x.id, x.email, x.age]), [[1, 'ann@node.example', 41], [2, 'bob@node.example', 42]]);
    }
  } finally {
    await c.end();
  }
  log(`pg ${name}: ok`);
}

async function mysqlQuickConnectEnd(conf) {
  const c = await mysql.createConnection(conf).then(
    (c) => c,
    (e) => e
  );
  if (c instanceof Error) {
    return `connect failed: ${c.code}`;
  }
  const ended = await c.end().then(
    () => 'ended',
    (e) => `end failed: ${e.code}`
  );
  return ended;
}

async function mysqlChecks(name, conf, encrypted, directQuick) {
  const quick = await mysqlQuickConnectEnd(conf);
  assert.equal(quick, directQuick, `${name}: connect+end at once`);

  const c = await mysql.createConnection(conf);
  try {
    let [rows] = await c.query('SELECT 1 AS one');
    assert.equal(rows[0].one, 1);
    [rows] = await c.execute('SELECT ? + 1 AS n', [41]);
    assert.equal(Number(rows[0].n), 42);

    const base = encrypted ? 100 : 0;
    await c.execute('INSERT INTO node_plain (id, doc, note) VALUES (?, ?, ?)', [base + 1, JSON.stringify({ a: [1, 2] }), 'x']);
    await c.query('INSERT INTO node_plain (id, doc, note) VALUES (?, ?, ?)', [base + 2, JSON.stringify({ b: true }), 'y']);
    // MariaDB sends JSON columns as LONGTEXT; mysql2 returns them as
    // objects only from the extended metadata (format json).
    [rows] = await c.query('SELECT id, doc FROM node_plain WHERE id IN (?, ?) ORDER BY id', [base + 1, base + 2]);
    assert.deepEqual(rows, [{ id: base + 1, doc: { a: [1, 2] } }, { id: base + 2, doc: { b: true } }], `${name}: text protocol JSON`);
    [rows] = await c.execute('SELECT doc FROM node_plain WHERE id = ?', [base + 1]);
    assert.deepEqual(rows, [{ doc: { a: [1, 2] } }], `${name}: binary protocol JSON`);

    if (encrypted) {
      await c.execute('INSERT INTO node_enc (id, email, doc, age) VALUES (?, ?, ?, ?)', [1, 'ann@node.example', JSON.stringify({ k: 'secret-one' }), 41]);
      await c.query('INSERT INTO node_enc (id, email, doc, age) VALUES (?, ?, ?, ?)', [2, 'bob@node.example', JSON.stringify({ k: 'secret-two' }), 42]);
      [rows] = await c.execute('SELECT id, email, doc, age FROM node_enc WHERE email = ?', ['ann@node.example']);
      assert.deepEqual(rows, [{ id: 1, email: 'ann@node.example', doc: { k: 'secret-one' }, age: 41 }], `${name}: encrypted, binary protocol`);
      [rows] = await c.query('SELECT id, doc, age FROM node_enc WHERE email = ?', ['bob@node.example']);
      assert.deepEqual(rows, [{ id: 2, doc: { k: 'secret-two' }, age: 42 }], `${name}: encrypted, text protocol`);
      [rows] = await c.query('SELECT id, email, age FROM node_enc ORDER BY id');
      assert.deepEqual(rows.map((x) => [x.id, x.email, x.age]), [[1, 'ann@node.example', 41], [2, 'bob@node.example', 42]]);
    }
  } finally {
    await c.end();
  }
  log(`mysql ${name}: ok`);
}

async function main() {
  const pgDirect = await pgQuickConnectEnd(cfg.pg.direct);
  log(`pg direct connect+end: ${pgDirect}`);
  await pgChecks('plain', cfg.pg.plain, false, pgDirect);
  await pgChecks('enc', cfg.pg.enc, true, pgDirect);

  const myDirect = await mysqlQuickConnectEnd(cfg.mysql.direct);
  log(`mysql direct connect+end: ${myDirect}`);
  await mysqlChecks('plain', cfg.mysql.plain, false, myDirect);
  await mysqlChecks('enc', cfg.mysql.enc, true, myDirect);
}

main().then(
  () => {
    log('all ok');
    process.exitCode = 0;
  },
  (e) => {
    console.error(e);
    process.exit(1);
  }
);
