/**
 * A worker process for liveness tests that stops reading: it says hello over a raw HTTP/2 stream,
 * grants CREDITS credits, prints "blocking" and then blocks its event loop for good, so nothing the
 * server sends is read (not even HTTP/2 window updates) and nothing more is sent. The test kills it.
 *
 * Environment: TASKQ_URL, TYPE, CREDITS.
 */
import http2 from "node:http2";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { WorkerMessageSchema } from "@taskq/protocol";

const frame = (message: MessageInitShape<typeof WorkerMessageSchema>["message"]) => {
  const body = toBinary(WorkerMessageSchema, create(WorkerMessageSchema, { message }));
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
};

const session = http2.connect(process.env.TASKQ_URL!);
const stream = session.request({ ":method": "POST", ":path": "/taskq.v1.WorkerService/Connect", "content-type": "application/grpc", te: "trailers" });
stream.write(frame({ case: "hello", value: { workerName: "stalled", taskTypes: [{ name: process.env.TYPE! }], acceptsBatches: true } }));
stream.once("data", () => {
  // The welcome came: take tasks, then stop reading anything.
  stream.write(frame({ case: "credits", value: { count: Number(process.env.CREDITS) } }), () => {
    console.log("blocking");
    for (;;);
  });
});
