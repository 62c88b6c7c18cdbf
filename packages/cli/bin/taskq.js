#!/usr/bin/env node
// The `taskq` command: the compiled CLI (src/main.ts, built to dist/ by `npm run build`).
import "../dist/main.js";
