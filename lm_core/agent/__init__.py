"""`lm agent`: a local license agent for one host, over HTTP (loopback TCP or a Unix socket).

Any program, in any language, asks the agent for a seat with one HTTP request; the agent
holds it with the client library (`lm_core.runtime.client`: heartbeats, fail-over,
release) until the program releases it or exits. Modules, one job each:

* `errors`   -- the error words the agent adds to the pool's `DenyReason`, and the HTTP
  status of each;
* `pids`     -- is the process that asked still alive (pid + start time, not reused)?
* `holdings` -- the leases the agent holds, and the reaper of leases whose process exited;
* `openapi`  -- the OpenAPI description served at ``GET /openapi.json``;
* `api`      -- the aiohttp application: request parsing and routes;
* `serve`    -- listening (loopback TCP and/or a Unix socket), the token, shutdown.
"""
