/**
 * Auth and TLS: bearer tokens with roles (client, worker, admin) decide every call before it runs; TLS
 * serves the same API, and with a client CA only clients holding a certificate it signed get in.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { tokenDigest, type AuthToken } from "../packages/server/src/rpc/auth.js";
import type { Replica } from "../packages/server/src/app.js";
import { TaskClient, TaskqError, Worker, type ConnectionOptions } from "@taskq/sdk";
import { connect } from "@taskq/sdk";
import { Health, HealthCheckResponse_ServingStatus } from "@taskq/protocol/grpc";
import { Harness, RawWorker } from "./helpers.js";

const TOKENS = { client: "client-token-0123456789", worker: "worker-token-0123456789", admin: "admin-token-0123456789" };
const authTokens: AuthToken[] = Object.entries(TOKENS).map(([role, token]) => ({ name: role, role: role as AuthToken["role"], sha256: tokenDigest(token) }));

let h: Harness;
let replica: Replica;
const closers: (() => unknown)[] = [];

before(async () => {
  h = await Harness.create();
  replica = await h.replica({ authTokens });
});
after(async () => {
  for (const close of closers) await close();
  await h.close();
});

function client(opts: Partial<ConnectionOptions> = {}, r = replica): TaskClient {
  const c = new TaskClient({ url: r.server.url, ...opts });
  closers.push(() => c.close());
  return c;
}

async function refused(call: () => Promise<unknown>): Promise<TaskqError | ConnectError> {
  const err = await call().then(() => null, (e: unknown) => e);
  assert.ok(err instanceof TaskqError || err instanceof ConnectError, `expected a refusal, got ${err === null ? "success" : String(err)}`);
  return err;
}
const refusal = async (call: () => Promise<unknown>): Promise<Code> => (await refused(call)).code;
/** A TLS handshake that fails: the client's transport reports it (as INTERNAL, naming the certificate problem). */
const TLS_REFUSAL = /certificate|alert|unknown ca|ssl/i;

const state = async () => (await h.pool.query("select (select count(*) from taskq.tasks) t, (select count(*) from taskq.history) h, (select count(*) from taskq.queues) q")).rows[0];

describe("bearer tokens", () => {
  test("without a token, or with a wrong one, every call is UNAUTHENTICATED and nothing changes", async () => {
    const before = await state();
    for (const token of [undefined, "not-a-known-token-at-all", `${TOKENS.admin}x`]) {
      const c = client({ token });
      assert.equal(await refusal(() => c.dispatch("a")), Code.Unauthenticated, `dispatch with ${token}`);
      assert.equal(await refusal(() => c.status("1")), Code.Unauthenticated);
      assert.equal(await refusal(() => c.listActive()), Code.Unauthenticated);
      assert.equal(await refusal(() => c.pauseQueue("default")), Code.Unauthenticated);
      assert.equal(await refusal(async () => { for await (const _ of c.rpc.watchTask({ taskId: "1" })) void _; }), Code.Unauthenticated);
    }
    const raw = new RawWorker({ url: replica.server.url });
    closers.push(() => raw.close());
    raw.hello(["a"]);
    assert.equal(((await raw.result()) as ConnectError).code, Code.Unauthenticated);
    assert.deepEqual(await state(), before);
  });

  test("a right token with the wrong role is PERMISSION_DENIED and nothing changes", async () => {
    const before = await state();
    const asWorker = client({ token: TOKENS.worker });
    assert.equal(await refusal(() => asWorker.dispatch("a")), Code.PermissionDenied);
    assert.equal(await refusal(() => asWorker.listHistory()), Code.PermissionDenied);
    const asClient = client({ token: TOKENS.client });
    assert.equal(await refusal(() => asClient.pauseQueue("default")), Code.PermissionDenied);
    assert.equal(await refusal(() => asClient.resumeQueue("default")), Code.PermissionDenied);
    const raw = new RawWorker({ url: replica.server.url, token: TOKENS.client });
    closers.push(() => raw.close());
    raw.hello(["a"]);
    const err = (await raw.result()) as ConnectError;
    assert.equal(err.code, Code.PermissionDenied);
    assert.match(err.rawMessage, /role client may not call taskq\.v1\.WorkerService\/Connect/);
    assert.deepEqual(await state(), before);
  });

  test("each role does its own work: a client dispatches, a worker runs it, an admin pauses queues", async () => {
    const asClient = client({ token: TOKENS.client });
    const worker = new Worker({ url: replica.server.url, token: TOKENS.worker, reconnect: { initialMs: 20, maxMs: 200 } });
    worker.register("auth.echo", async (ctx) => ({ echoed: ctx.params.word ?? null }));
    closers.push(() => worker.stop({ graceMs: 1_000 }));
    await worker.start();
    const task = await asClient.dispatch("auth.echo", { word: "hi" });
    assert.deepEqual(await task.result(), { echoed: "hi" });

    const asAdmin = client({ token: TOKENS.admin });
    assert.equal((await asAdmin.pauseQueue("default")).paused, true);
    assert.equal((await asAdmin.resumeQueue("default")).paused, false);
    const adminTask = await asAdmin.dispatch("auth.echo", { word: "admin" });
    assert.deepEqual(await adminTask.result(), { echoed: "admin" });
  });

  test("the health check needs no token", async () => {
    const conn = connect({ url: replica.server.url });
    closers.push(() => conn.close());
    const res = await createClient(Health, conn.transport).check({});
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });
});

describe("TLS", () => {
  let dir: string;
  let pem: (name: string) => Promise<Buffer>;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "taskq-tls-"));
    makeCertificates(dir);
    pem = (name) => readFile(path.join(dir, name));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("serves the API over TLS to clients that trust its CA, and not to those that do not", async () => {
    const tlsReplica = await h.replica({ tls: { cert: await pem("server.crt"), key: await pem("server.key"), clientCa: null } });
    assert.match(tlsReplica.server.url, /^https:\/\//);
    const trusting = client({ tls: { ca: await pem("ca.crt") } }, tlsReplica);
    const task = await trusting.dispatch("tls.a");
    assert.equal((await trusting.status(task.id)).status, "pending");

    const untrusting = client({}, tlsReplica);
    assert.match((await refused(() => untrusting.dispatch("tls.b"))).message, TLS_REFUSAL);
    const plain = client({ url: tlsReplica.server.url.replace("https", "http") }, tlsReplica);
    await refused(() => plain.dispatch("tls.c"));
    const { rows } = await h.pool.query("select type from taskq.tasks where type like 'tls.%'");
    assert.deepEqual(rows.map((r) => r.type), ["tls.a"]);
  });

  test("with a client CA (mutual TLS), only clients presenting a certificate it signed get in", async () => {
    const mtls = await h.replica({
      tls: { cert: await pem("server.crt"), key: await pem("server.key"), clientCa: await pem("ca.crt") },
    });
    const ca = await pem("ca.crt");
    const withCert = client({ tls: { ca, cert: await pem("client.crt"), key: await pem("client.key") } }, mtls);
    await withCert.dispatch("mtls.a");
    const withoutCert = client({ tls: { ca } }, mtls);
    assert.match((await refused(() => withoutCert.dispatch("mtls.b"))).message, TLS_REFUSAL);
    const strangerCert = client({ tls: { ca, cert: await pem("stranger.crt"), key: await pem("stranger.key") } }, mtls);
    await refused(() => strangerCert.dispatch("mtls.c")); // TLS 1.3: the server refuses after the handshake, so no message names it
    const { rows } = await h.pool.query("select type from taskq.tasks where type like 'mtls.%'");
    assert.deepEqual(rows.map((r) => r.type), ["mtls.a"]);
  });
});

/** A CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by it, and a self-signed stranger. */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const key = (name: string) => ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`);
  key("ca");
  ssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=taskq test CA", "-days", "2", "-out", "ca.crt");
  const signed = (name: string, subject: string, ext: string) => {
    key(name);
    ssl("req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`);
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", `${name}.crt`);
  };
  execFileSync("sh", ["-c", "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext; printf 'extendedKeyUsage=clientAuth\\n' > client.ext"], { cwd: dir });
  signed("server", "/CN=127.0.0.1", "server.ext");
  signed("client", "/CN=taskq test client", "client.ext");
  key("stranger");
  ssl("req", "-x509", "-new", "-key", "stranger.key", "-subj", "/CN=stranger", "-days", "2", "-out", "stranger.crt");
}
