"""The operator process's plain-HTTP /healthz, for probes: it answers while the event
loop runs, on the leader and on a standby alike (kopf's own liveness endpoint runs only
while kopf serves, so a standby's probe would fail and its pod be restarted)."""

from __future__ import annotations

from aiohttp import web


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve_health(port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
