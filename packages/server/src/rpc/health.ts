/**
 * grpc.health.v1: SERVING while the database answers, NOT_SERVING when it does not or while the replica
 * drains. Watch checks every WATCH_INTERVAL_MS, and at once when the drain begins: a drain with nothing
 * running ends within milliseconds, and clients that balance by Watch must hear NOT_SERVING before the
 * stream ends.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as Serving } from "@taskq/protocol/grpc";

const WATCH_INTERVAL_MS = 5_000;

/** `probe` resolves true when the service can do its work (its database answers, it is not draining). */
export function healthService(services: string[], probe: () => Promise<boolean>, draining: AbortSignal): ServiceImpl<typeof Health> {
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
        if (s !== last) {
          last = s;
          yield { status: s };
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            ctx.signal.removeEventListener("abort", done);
            draining.removeEventListener("abort", done);
            resolve();
          };
          const t = setTimeout(done, WATCH_INTERVAL_MS);
          ctx.signal.addEventListener("abort", done, { once: true });
          if (!draining.aborted) draining.addEventListener("abort", done, { once: true });
        });
      }
    },
  };
}
