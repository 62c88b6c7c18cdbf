#!/usr/bin/env node
// The `taskq` command. taskq runs from its TypeScript sources, so this registers tsx and hands over.
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
