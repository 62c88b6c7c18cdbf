/** grpc.health.v1: SERVING while the database answers, NOT_SERVING when it does not. */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../sdk/gen/grpc/health/v1/health_pb.js";

const WATCH_INTERVAL_MS = 5_000;

/** `probe` resolves true when the service can do its work (its database answers). */
export function healthService(services: string[], probe: () => Promise<boolean>): ServiceImpl<typeof Health> {
  const known = new Set(["", ...services]);
  const status = async () => ((await probe()) ? Serving.SERVING : Serving.NOT_SERVING);
  return {
    async check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: await status() };
    },
    async list() {
      const s = await status();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: s }])) };
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        yield { status: Serving.SERVICE_UNKNOWN };
        return;
      }
      let last: Serving | null = null;
      while (!ctx.signal.aborted) {
        const s = await status();
        if (s !== last) yield { status: (last = s) };
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, WATCH_INTERVAL_MS);
          ctx.signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
        });
      }
    },
  };
}
