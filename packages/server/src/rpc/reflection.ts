/**
 * grpc.reflection.v1, so generic tools (`buf curl --list-methods`, grpcurl, Postman, evans) can discover
 * the API. Answers from the generated descriptors of the served files and everything they import.
 *
 * The reflection service describes itself too: tools list every service and then ask for each one's
 * file, and stop at the first they cannot resolve ("failed to find service named
 * grpc.reflection.v1.ServerReflection in schema").
 */
import { create, createRegistry, toBinary, type DescExtension, type DescFile, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ServerReflection,
  ServerReflectionResponseSchema,
  file_grpc_reflection_v1_reflection,
} from "@taskq/protocol/grpc";

const NOT_FOUND = 5;

/** Every file reachable from `roots` through its imports, each once, dependencies first. */
function withImports(roots: DescFile[]): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.set(f.name, f);
    f.dependencies.forEach(visit);
  };
  roots.forEach(visit);
  return [...seen.values()];
}

/** `files` hold the served services (this service's own file is added); `serviceNames` are listed. */
export function reflectionService(files: DescFile[], serviceNames: string[]): ServiceImpl<typeof ServerReflection> {
  const all = withImports([...files, file_grpc_reflection_v1_reflection]);
  const registry = createRegistry(...all);
  const byName = new Map(all.map((f) => [`${f.name}.proto`, f]));
  const listed = [...new Set([...serviceNames, ServerReflection.typeName])];
  const descriptors = (file: DescFile) => ({
    case: "fileDescriptorResponse" as const,
    value: { fileDescriptorProto: withImports([file]).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  });
  const notFound = (what: string) => ({ case: "errorResponse" as const, value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } });
  const extensionsOf = (typeName: string) =>
    [...registry].filter((d): d is DescExtension => d.kind === "extension" && d.extendee.typeName === typeName);

  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const r = req.messageRequest;
        let response: MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"];
        switch (r.case) {
          case "listServices":
            response = { case: "listServicesResponse", value: { service: listed.map((name) => ({ name })) } };
            break;
          case "fileByFilename": {
            const file = byName.get(r.value);
            response = file ? descriptors(file) : notFound(`file ${r.value}`);
            break;
          }
          case "fileContainingSymbol": {
            // A symbol may name a member (a method, a field): then its parent names the descriptor.
            const symbol = r.value.replace(/^\./, "");
            const desc = registry.get(symbol) ?? registry.get(symbol.split(".").slice(0, -1).join("."));
            const file = desc && "file" in desc ? desc.file : undefined;
            response = file ? descriptors(file) : notFound(`symbol ${r.value}`);
            break;
          }
          case "fileContainingExtension": {
            const message = registry.getMessage(r.value.containingType.replace(/^\./, ""));
            const ext = message && registry.getExtensionFor(message, r.value.extensionNumber);
            response = ext ? descriptors(ext.file) : notFound(`extension ${r.value.extensionNumber} of ${r.value.containingType}`);
            break;
          }
          case "allExtensionNumbersOfType": {
            const typeName = r.value.replace(/^\./, "");
            response = registry.getMessage(typeName)
              ? {
                  case: "allExtensionNumbersResponse",
                  value: { baseTypeName: typeName, extensionNumber: extensionsOf(typeName).map((e) => e.number) },
                }
              : notFound(`type ${r.value}`);
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
