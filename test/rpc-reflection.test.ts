/**
 * Server reflection as generic tools use it: `buf curl --list-methods` (which lists the services, then
 * asks for each one's file, the reflection service's own included), and a plain @grpc/grpc-js client
 * that loads reflection.proto at run time and decodes the descriptors it gets back.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { fromBinary, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Health } from "@taskq/protocol/grpc";
import { ServerReflection } from "@taskq/protocol/grpc";
import { TaskQueue } from "@taskq/protocol";
import { WorkerService } from "@taskq/protocol";
import { Harness } from "./helpers.js";

const SERVICES: DescService[] = [Health, ServerReflection, TaskQueue, WorkerService];
const BUF = path.resolve("node_modules/.bin/buf");

let h: Harness;
let url: string;
before(async () => {
  h = await Harness.create();
  url = (await h.replica()).server.url;
});
after(() => h.close());

const bufCurl = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(BUF, ["curl", ...args], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );

const allMethods = () => SERVICES.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`)).sort();

for (const [name, flags] of [
  ["default protocol", []],
  ["gRPC", ["--protocol", "grpc", "--http2-prior-knowledge"]],
] as const) {
  test(`buf curl --list-methods (${name}) lists every method of every service, reflection's own included`, async () => {
    const out = await bufCurl([...flags, "--list-methods", url]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(out.stdout.trim().split("\n").sort(), allMethods());
  });
}

test("buf curl can call the reflection service itself through reflection", async () => {
  const out = await bufCurl(["--protocol", "grpc", "-d", '{"list_services": ""}', `${url}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`]);
  assert.equal(out.code, 0, out.stderr);
  const names = (JSON.parse(out.stdout) as { listServicesResponse: { service: { name: string }[] } }).listServicesResponse.service.map((s) => s.name);
  assert.deepEqual(names.sort(), SERVICES.map((s) => s.typeName).sort());
});

interface ReflectionResponse {
  message_response: string;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  error_response?: { error_code: number; error_message: string };
}

test("grpc-js: every listed service resolves to a file that defines it, with the files it imports", async () => {
  const definition = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: ["packages/protocol/proto"], keepCase: true, oneofs: true });
  // A package loaded at run time has no static type: the one service this test reads from it.
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };
  const client = new loaded.grpc.reflection.v1.ServerReflection(url.replace("http://", ""), grpc.credentials.createInsecure());
  try {
    const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }).ServerReflectionInfo();
    const responses: ReflectionResponse[] = [];
    let wake: (() => void) | null = null;
    call.on("data", (r: ReflectionResponse) => {
      responses.push(r);
      wake?.();
    });
    const ended = new Promise<void>((resolve, reject) => {
      call.on("end", resolve);
      call.on("error", reject);
    });
    const ask = async (req: object): Promise<ReflectionResponse> => {
      call.write(req);
      while (responses.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return responses.shift()!;
    };

    const list = await ask({ list_services: "" });
    const names = (list as unknown as { list_services_response: { service: { name: string }[] } }).list_services_response.service.map((s) => s.name);
    assert.deepEqual(names.sort(), SERVICES.map((s) => s.typeName).sort());

    for (const name of names) {
      const r = await ask({ file_containing_symbol: name });
      assert.equal(r.message_response, "file_descriptor_response", `${name}: ${r.error_response?.error_message}`);
      const files = r.file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      const [pkgName, service] = [name.slice(0, name.lastIndexOf(".")), name.slice(name.lastIndexOf(".") + 1)];
      const defining = files.find((f) => f.package === pkgName && f.service.some((s) => s.name === service));
      assert.ok(defining, `${name} is defined in the first file or one of its imports`);
      assertImportsPresent(files, name);
      // A method is a symbol too (grpcurl describes one by its full name).
      const method = SERVICES.find((s) => s.typeName === name)!.methods[0];
      const byMethod = await ask({ file_containing_symbol: `${name}.${method.name}` });
      assert.equal(byMethod.message_response, "file_descriptor_response", `${name}.${method.name}`);
    }

    const ext = await ask({ all_extension_numbers_of_type: "grpc.reflection.v1.ServerReflectionRequest" });
    assert.equal(ext.message_response, "all_extension_numbers_response");
    assert.equal(ext.all_extension_numbers_response!.base_type_name, "grpc.reflection.v1.ServerReflectionRequest");
    const unknown = await ask({ file_containing_symbol: "no.such.Service" });
    assert.equal(unknown.message_response, "error_response");
    assert.equal(unknown.error_response!.error_code, grpc.status.NOT_FOUND);
    call.end();
    await ended;
  } finally {
    client.close();
  }
});

/** Every file a returned file imports is returned with it, so a tool can build the whole schema. */
function assertImportsPresent(files: FileDescriptorProto[], what: string): void {
  const names = new Set(files.map((f) => f.name));
  for (const f of files) for (const dep of f.dependency) assert.ok(names.has(dep), `${what}: ${f.name} imports ${dep}, which was not sent`);
}
