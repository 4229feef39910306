"""Simulated upstream LLM providers: real HTTP servers on 127.0.0.1 that answer like the OpenAI Chat
Completions API or the Anthropic Messages API, scripted per request.

They ship in the package because `detour demo` and the benchmarks use them, not only the tests.
An independent layer: nothing here imports the rest of `sidecar`.

    async with SimulatedProvider("openai", name="primary") as sim:
        sim.script(RateLimit(retry_after="20"), Reply(text="hi"))
        sim.set_limiter(WindowLimiter(max_requests=3, window_s=60))
        client = openai.AsyncOpenAI(base_url=sim.base_url, api_key="k")
"""

from sidecar.simulate.behaviours import (
    Behaviour,
    CutStream,
    Delay,
    ErrorReply,
    Hang,
    MalformedEvent,
    RateLimit,
    Reply,
    ResetConnection,
    ServerError,
    SlowStream,
    ToolCall,
)
from sidecar.simulate.limiter import WindowLimiter, WindowState
from sidecar.simulate.server import RecordedRequest, SimulatedProvider

__all__ = [
    "Behaviour",
    "CutStream",
    "Delay",
    "ErrorReply",
    "Hang",
    "MalformedEvent",
    "RateLimit",
    "RecordedRequest",
    "Reply",
    "ResetConnection",
    "ServerError",
    "SimulatedProvider",
    "SlowStream",
    "ToolCall",
    "WindowLimiter",
    "WindowState",
]
