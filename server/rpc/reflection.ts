/**
 * grpc.reflection.v1, so generic tools (`buf curl --list-services`, grpcurl, Postman) can discover the
 * API. Answers from the generated descriptors of the served files and everything they import.
 */
import { create, createRegistry, toBinary, type DescFile, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ServerReflection, ServerReflectionResponseSchema } from "../../sdk/gen/grpc/reflection/v1/reflection_pb.js";

const NOT_FOUND = 5;

export function reflectionService(files: DescFile[], serviceNames: string[]): ServiceImpl<typeof ServerReflection> {
  const registry = createRegistry(...files);
  const byName = new Map<string, DescFile>();
  const withImports = (file: DescFile): DescFile[] => {
    const seen = new Map<string, DescFile>();
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.set(f.name, f);
      f.dependencies.forEach(visit);
    };
    visit(file);
    return [...seen.values()];
  };
  for (const f of files.flatMap(withImports)) byName.set(`${f.name}.proto`, f);
  const descriptors = (file: DescFile) => ({
    case: "fileDescriptorResponse" as const,
    value: { fileDescriptorProto: withImports(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  });
  const notFound = (what: string) => ({ case: "errorResponse" as const, value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });

  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const r = req.messageRequest;
        let response: MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];
        switch (r.case) {
          case "listServices":
            response = { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
            break;
          case "fileByFilename": {
            const file = byName.get(r.value);
            response = file ? descriptors(file) : notFound(`file ${r.value}`);
            break;
          }
          case "fileContainingSymbol": {
            const symbol = r.value.replace(/^\./, "");
            const desc = registry.get(symbol) ?? registry.get(symbol.split(".").slice(0, -1).join("."));
            const file = desc && "file" in desc ? desc.file : undefined;
            response = file ? descriptors(file) : notFound(`symbol ${r.value}`);
            break;
          }
          default:
            response = notFound("request kind");
        }
        yield create(ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: response });
      }
    },
  };
}
