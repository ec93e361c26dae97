"""A streamed answer: CHUNKS lines, one every DELAY_S seconds, each sent as soon as it is
produced (what an LLM's token stream looks like to the proxies in front of Serve).

    GET /?chunks=5&delay=0.2   -> "chunk 0 at <unix time>\n" ... then "done\n"
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from ray import serve
from starlette.requests import Request
from starlette.responses import StreamingResponse

CHUNKS = 5
DELAY_S = 0.2


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Ticker:
    async def __call__(self, request: Request) -> StreamingResponse:
        chunks = min(int(request.query_params.get("chunks", CHUNKS)), 100)
        delay = min(float(request.query_params.get("delay", DELAY_S)), 5.0)
        return StreamingResponse(self.lines(chunks, delay), media_type="text/plain")

    async def lines(self, chunks: int, delay: float) -> AsyncIterator[str]:
        for number in range(chunks):
            if number:
                await asyncio.sleep(delay)
            yield f"chunk {number} at {time.time():.6f}\n"
        yield "done\n"


# `import_path: streaming:app` in serve_config.yaml
app = Ticker.bind()
