"""The upstream for the reliability run: the OpenAI emulator of the test
suite (tests/emulators/), in its own process, on a port given on the command
line, forgetting the requests it served (a soak sends hundreds of thousands).
Its keys' behaviours (faults included) are set over a small control route."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from tests.emulators.openai_api import OpenAIEmulator


class SoakEmulator(OpenAIEmulator):
    def _endpoint(self, handler, body_kind):  # type: ignore[no-untyped-def]
        inner = super()._endpoint(handler, body_kind)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            try:
                return await inner(request)
            finally:
                self.requests.clear()

        return endpoint

    def add_extra_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control/behaviour", self._control)
        super().add_extra_routes(app)

    async def _control(self, request: web.Request) -> web.StreamResponse:
        order = await request.json()
        if order.get("reset"):
            self.reset()
        else:
            self.set_key_behaviour(order["key"], order["behaviour"], **order.get("options", {}))
        return web.json_response({"ok": True})


def main() -> None:
    port_file = Path(sys.argv[1])
    emulator = SoakEmulator(valid_keys=("sk-upstream-good", "sk-upstream-spare"))
    emulator.models += ["whisper-1"]
    emulator.start()
    port_file.write_text(json.dumps({"url": emulator.base_url, "root": emulator.root_url}))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
