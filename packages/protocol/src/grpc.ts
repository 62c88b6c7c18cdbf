/** The standard gRPC services a taskq server also serves: health checking and server reflection. */
export * from "./gen/grpc/health/v1/health_pb.js";
export * from "./gen/grpc/reflection/v1/reflection_pb.js";
