import http2 from "node:http2";
import { Harness } from "../test/helpers.js";
const h = await Harness.create();
const r = await h.replica();
const s = http2.connect(r.server.url);
for (const hex of ["0000000091257ddb4e1d6fe990cca562f205f7e5c04c0265b55c91072138a366bd28670d948bb921", "000000000eb90c7c244ad67974fd4880c30084"]) {
  const body = Buffer.from(hex, "hex"); body.writeUInt32BE(body.length - 5, 1);
  await new Promise<void>((res) => {
    const q = s.request({ ":method": "POST", ":path": "/taskq.v1.TaskQueue/Dispatch", "content-type": "application/grpc+proto", te: "trailers" });
    q.on("response", (hd) => hd["grpc-status"] && console.log("resp", hd["grpc-status"], hd["grpc-message"]));
    q.on("trailers", (t) => console.log("trl", t["grpc-status"], decodeURIComponent(String(t["grpc-message"]))));
    q.on("data", () => {}); q.on("end", () => res()); q.end(body);
  });
}
s.close(); await h.close();
