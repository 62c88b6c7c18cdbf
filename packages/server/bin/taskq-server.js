#!/usr/bin/env node
// The `taskq-server` command: the compiled server (src/main.ts, built to dist/ by `npm run build`).
import "../dist/main.js";
