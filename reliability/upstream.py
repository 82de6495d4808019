"""The upstream for the reliability run: the OpenAI emulator of the test
suite (tests/emulators/), in its own process, on a port given on the command
line, forgetting the requests it served (a soak sends hundreds of thousands).
Its keys' behaviours (faults included) are set over a small control route."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.emulators.base import Handler
from tests.emulators.openai_api import OpenAIEmulator


class SoakEmulator(OpenAIEmulator):
    """Counts requests per key instead of keeping them."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.counts: Counter[str] = Counter()

    def _endpoint(self, handler: Handler, body_kind: Any) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        inner = super()._endpoint(handler, body_kind)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            self.counts[self._key_of(request) or ""] += 1  # on arrival: streams in flight count
            try:
                return await inner(request)
            finally:
                self.requests.clear()

        return endpoint

    def add_extra_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control/behaviour", self._control)
        app.router.add_get("/_control/count", self._count)
        super().add_extra_routes(app)

    async def _count(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(self.counts))

    async def _control(self, request: web.Request) -> web.StreamResponse:
        order = await request.json()
        if order.get("reset"):
            self.reset()
            self.counts.clear()
        else:
            self.set_key_behaviour(order["key"], order["behaviour"], **order.get("options", {}))
        return web.json_response({"ok": True})


def main() -> None:
    port_file = Path(sys.argv[1])
    emulator = SoakEmulator(valid_keys=("sk-upstream-good", "sk-upstream-faulty"))
    emulator.models += ["whisper-1"]
    emulator.start()
    port_file.write_text(json.dumps({"url": emulator.base_url, "root": emulator.root_url}))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
