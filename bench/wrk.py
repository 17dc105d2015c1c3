"""Load from wrk (Debian's `wrk`), when it is installed: far less client overhead per request
than Python, so the server, not the driver, is what the figures measure."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.driver import Plan

_SCRIPT = """
local paths = {%(paths)s}
local bodies = {%(bodies)s}
wrk.method = "%(method)s"
%(headers)s
request = function()
  local body = nil
  if #bodies > 0 then body = bodies[math.random(#bodies)] end
  return wrk.format(nil, paths[math.random(#paths)], nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %%d, "elapsed": %%f, "p50_ms": %%f, "p99_ms": %%f, "non_2xx": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return "[==[" + value + "]==]"


def run(plan: Plan) -> dict[str, Any]:
    headers = dict(plan.headers)
    if plan.bodies:
        headers["Content-Type"] = "application/json"
    script = _SCRIPT % {
        "paths": ", ".join(_lua_string(p) for p in plan.paths),
        "bodies": ", ".join(_lua_string(json.dumps(b)) for b in plan.bodies or []),
        "method": plan.method,
        "headers": "\n".join(
            f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()
        ),
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "plan.lua"
        path.write_text(script)
        output = subprocess.run(
            [
                shutil.which("wrk") or "wrk",
                "-t1",
                f"-c{plan.concurrency}",
                f"-d{max(1, round(plan.duration))}s",
                "--timeout",
                "10s",
                "-s",
                str(path),
                plan.base_url,
            ],
            capture_output=True,
            text=True,
            timeout=plan.duration + 60,
            check=True,
        ).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result
