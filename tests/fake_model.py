"""A scripted fake model server for driving the real Claude Code and Codex CLIs in tests.

Why: issues 15 and 16 need the real agent TUIs in tmux panes, with the model under the
test's control. One threaded HTTP server on 127.0.0.1 (random port) speaks both wire APIs:

- the Anthropic Messages API (`POST /v1/messages`, SSE when `stream` is true, plus
  `/v1/messages/count_tokens`), which Claude Code uses with `ANTHROPIC_BASE_URL`;
- the OpenAI Responses API (`POST /v1/responses`, SSE), which Codex uses through a
  `[model_providers.X]` with `base_url` and `wire_api = "responses"`.

A test scripts the *main* turns as a queue (`model.script(Text(...), ToolCall(...), ...)`).
Each main request (one that offers tools: the agent loop) takes the next entry; an empty
queue answers `DEFAULT_ANSWER`. Side requests (title generation, quota probes, anything
without tools) are answered at once with a short text and never take from the queue.
Every request is recorded (`model.requests`) so a test can assert what reached the model.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ANSWER = "ok"
SIDE_ANSWER = "Test session"


@dataclass
class Text:
    """A text answer streamed in `chunks` pieces spread over `seconds`."""

    text: str
    seconds: float = 0.0
    chunks: int = 10


@dataclass
class ToolCall:
    """The model asks for one tool call; the follow-up request carries its result.

    `args` is the tool's JSON input; `text` is optional prose streamed before the call.
    """

    name: str
    args: dict[str, Any]
    text: str = ""
    namespace: str = ""  # Responses API: a tool inside a `namespace` tool (Codex: mcp__SERVER)


Turn = Text | ToolCall


@dataclass
class Request:
    """One request as it reached the server."""

    api: str  # "anthropic" | "responses" | "other"
    method: str
    path: str
    body: dict[str, Any]
    main: bool  # an agent-loop request (it offers tools), not a side request
    at: float = field(default_factory=time.monotonic)
    turn: Turn | None = None  # what the server answered a main request with
    done: bool = False  # the answer has been sent in full (or the client went away)
    agent: str = ""  # NAME when the client's base URL was `url_for(NAME)`

    @property
    def tool_names(self) -> list[str]:
        """Tool names offered; a Responses `namespace` tool's members as NAMESPACE__NAME
        (Codex lists an MCP server's tools as namespace `mcp__SERVER`)."""
        names = []
        for tool in self.body.get("tools") or []:
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if tool.get("type") == "namespace":
                names.extend(f"{name}__{inner.get('name')}" for inner in tool.get("tools") or [])
            elif name:
                names.append(str(name))
        return names

    @property
    def session_id(self) -> str:
        """The CLI's session id (Claude Code: metadata.user_id's JSON; Codex:
        client_metadata.session_id), '' if absent: what its hooks see as `session_id`."""
        meta = self.body.get("client_metadata") or {}
        if meta.get("session_id"):
            return str(meta["session_id"])
        user = (self.body.get("metadata") or {}).get("user_id") or ""
        try:
            return str(json.loads(user).get("session_id") or "")
        except (ValueError, AttributeError):
            return ""

    def user_texts(self) -> list[str]:
        """Every text the user role carries, in order (system reminders included)."""
        out: list[str] = []
        if self.api == "anthropic":
            for msg in self.body.get("messages") or []:
                if msg.get("role") != "user":
                    continue
                content = msg.get("content")
                if isinstance(content, str):
                    out.append(content)
                    continue
                for block in content or []:
                    if block.get("type") == "text":
                        out.append(block.get("text", ""))
        elif self.api == "responses":
            items = self.body.get("input") or []
            if isinstance(items, str):
                return [items]
            for item in items:
                if item.get("role") != "user":
                    continue
                content = item.get("content")
                if isinstance(content, str):
                    out.append(content)
                    continue
                for block in content or []:
                    if block.get("type") in ("input_text", "text"):
                        out.append(block.get("text", ""))
        return out

    def tool_results(self) -> list[str]:
        """The text of every tool result the request carries, in order."""
        out: list[str] = []
        if self.api == "anthropic":
            for msg in self.body.get("messages") or []:
                content = msg.get("content")
                if msg.get("role") != "user" or isinstance(content, str):
                    continue
                for block in content or []:
                    if block.get("type") != "tool_result":
                        continue
                    inner = block.get("content")
                    if isinstance(inner, str):
                        out.append(inner)
                    else:
                        out.append("".join(b.get("text", "") for b in inner or []
                                           if b.get("type") == "text"))
        elif self.api == "responses":
            for item in self.body.get("input") or []:
                if item.get("type") in ("function_call_output", "custom_tool_call_output"):
                    output = item.get("output")
                    if isinstance(output, dict):
                        output = output.get("content") or json.dumps(output)
                    elif isinstance(output, list):
                        output = "".join(b.get("text", "") for b in output
                                         if isinstance(b, dict))
                    out.append(str(output))
        return out

    def text(self) -> str:
        """The whole body as text: for `in` checks that do not care where a string sits."""
        return json.dumps(self.body, ensure_ascii=False)


class FakeModel:
    """The server. Start with `start()` (or use as a context manager), stop with `stop()`.

    Several agents may share one server, each with a queue of its own: an agent whose base
    URL is `url_for(NAME)` (`…/agent/NAME`) takes its turns from `script(..., agent=NAME)`
    first and from the shared queue after; its requests carry `agent == NAME`.
    """

    def __init__(self) -> None:
        self.queues: dict[str, deque[Turn]] = {"": deque()}
        self.requests: list[Request] = []
        self.cond = threading.Condition()
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------------
    def start(self) -> FakeModel:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, agent: str) -> str:
        """The base URL that routes an agent's requests to its own queue."""
        return f"{self.url}/agent/{agent}" if agent else self.url

    # --- scripting --------------------------------------------------------------
    @property
    def turns(self) -> deque[Turn]:
        """The shared queue."""
        return self.queues[""]

    def script(self, *turns: Turn, agent: str = "") -> None:
        """Queue the answers to the next main requests (of `agent` only, if given)."""
        with self.cond:
            self.queues.setdefault(agent, deque()).extend(turns)

    def _mine(self, req: Request, agent: str | None) -> bool:
        return req.main and (agent is None or req.agent == agent)

    def main_requests(self, agent: str | None = None) -> list[Request]:
        """Main requests so far (of `agent` only, if given), in arrival order."""
        with self.cond:
            return [r for r in self.requests if self._mine(r, agent)]

    def wait_main(self, count: int, timeout: float = 30.0,
                  agent: str | None = None) -> list[Request]:
        """Block until `count` main requests (of `agent`) have arrived; all of them so far."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [r for r in self.requests if self._mine(r, agent)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(found)} main requests within {timeout}s, wanted {count}; "
                        f"paths seen: {[r.path for r in self.requests]}")
                self.cond.wait(left)

    def idle(self, agent: str | None = None) -> bool:
        """No answer (to `agent`) is being streamed; scripted turns may still wait."""
        with self.cond:
            return all(r.done for r in self.requests if agent is None or r.agent == agent)

    def pending(self, agent: str | None = None) -> int:
        """Scripted turns not yet taken (from `agent`'s own queue, if given)."""
        with self.cond:
            if agent is None:
                return sum(len(q) for q in self.queues.values())
            return len(self.queues.get(agent, ()))

    def _finish(self, req: Request) -> None:
        with self.cond:
            req.done = True
            self.cond.notify_all()

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _record(self, req: Request) -> Request:
        with self.cond:
            if req.main:
                own = self.queues.get(req.agent)
                if own:
                    req.turn = own.popleft()
                elif self.turns:
                    req.turn = self.turns.popleft()
                else:
                    req.turn = Text(DEFAULT_ANSWER)
            self.requests.append(req)
            self.cond.notify_all()
        return req


# --- wire formats ------------------------------------------------------------------

def _pieces(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    n = max(1, min(chunks, len(text)))
    size = -(-len(text) // n)
    return [text[i:i + size] for i in range(0, len(text), size)]


def _usage_anthropic(output_tokens: int = 5) -> dict[str, int]:
    return {"input_tokens": 10, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def anthropic_events(model: FakeModel, turn: Turn, model_name: str) -> Iterator[tuple[str, Any]]:
    """(event name, data) pairs of one streamed Messages API answer; a float is a pause."""
    msg_id = model.next_id("msg")
    yield "message_start", {"type": "message_start", "message": {
        "id": msg_id, "type": "message", "role": "assistant", "model": model_name,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": _usage_anthropic(1)}}
    index = 0
    text = turn.text
    if text:
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "text", "text": ""}}
        pieces = _pieces(text, turn.chunks if isinstance(turn, Text) else 1)
        pause = turn.seconds / len(pieces) if isinstance(turn, Text) and pieces else 0.0
        for piece in pieces:
            if pause:
                yield "", pause
            yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": piece}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    stop = "end_turn"
    if isinstance(turn, ToolCall):
        stop = "tool_use"
        yield "content_block_start", {"type": "content_block_start", "index": index,
                                      "content_block": {"type": "tool_use",
                                                        "id": model.next_id("toolu"),
                                                        "name": turn.name, "input": {}}}
        yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                      "delta": {"type": "input_json_delta",
                                                "partial_json": json.dumps(turn.args)}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": 5}}
    yield "message_stop", {"type": "message_stop"}


def anthropic_message(model: FakeModel, turn: Turn, model_name: str) -> dict[str, Any]:
    """The same answer as one JSON message (a request with `stream` false)."""
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    if isinstance(turn, ToolCall):
        content.append({"type": "tool_use", "id": model.next_id("toolu"), "name": turn.name,
                        "input": turn.args})
    return {"id": model.next_id("msg"), "type": "message", "role": "assistant",
            "model": model_name, "content": content,
            "stop_reason": "tool_use" if isinstance(turn, ToolCall) else "end_turn",
            "stop_sequence": None, "usage": _usage_anthropic()}


def responses_events(model: FakeModel, turn: Turn, model_name: str) -> Iterator[tuple[str, Any]]:
    """(event name, data) pairs of one streamed Responses API answer; a float is a pause."""
    resp_id = model.next_id("resp")
    base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
            "model": model_name, "status": "in_progress", "output": []}
    yield "response.created", {"type": "response.created", "response": base}
    output: list[dict[str, Any]] = []
    index = 0
    if turn.text:
        item_id = model.next_id("msg")
        item: dict[str, Any] = {"type": "message", "id": item_id, "role": "assistant",
                                "status": "in_progress", "content": []}
        yield "response.output_item.added", {"type": "response.output_item.added",
                                             "output_index": index, "item": item}
        yield "response.content_part.added", {
            "type": "response.content_part.added", "item_id": item_id, "output_index": index,
            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}
        pieces = _pieces(turn.text, turn.chunks if isinstance(turn, Text) else 1)
        pause = turn.seconds / len(pieces) if isinstance(turn, Text) and pieces else 0.0
        for piece in pieces:
            if pause:
                yield "", pause
            yield "response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": item_id,
                "output_index": index, "content_index": 0, "delta": piece}
        part = {"type": "output_text", "text": turn.text, "annotations": []}
        yield "response.output_text.done", {"type": "response.output_text.done",
                                            "item_id": item_id, "output_index": index,
                                            "content_index": 0, "text": turn.text}
        yield "response.content_part.done", {"type": "response.content_part.done",
                                             "item_id": item_id, "output_index": index,
                                             "content_index": 0, "part": part}
        done = dict(item, status="completed", content=[part])
        yield "response.output_item.done", {"type": "response.output_item.done",
                                            "output_index": index, "item": done}
        output.append(done)
        index += 1
    if isinstance(turn, ToolCall):
        call = {"type": "function_call", "id": model.next_id("fc"),
                "call_id": model.next_id("call"), "name": turn.name,
                "arguments": json.dumps(turn.args), "status": "completed"}
        if turn.namespace:
            call["namespace"] = turn.namespace
        yield "response.output_item.added", {"type": "response.output_item.added",
                                             "output_index": index,
                                             "item": dict(call, arguments="",
                                                          status="in_progress")}
        yield "response.function_call_arguments.delta", {
            "type": "response.function_call_arguments.delta", "item_id": call["id"],
            "output_index": index, "delta": call["arguments"]}
        yield "response.function_call_arguments.done", {
            "type": "response.function_call_arguments.done", "item_id": call["id"],
            "output_index": index, "arguments": call["arguments"]}
        yield "response.output_item.done", {"type": "response.output_item.done",
                                            "output_index": index, "item": call}
        output.append(call)
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 15}
    yield "response.completed", {"type": "response.completed",
                                 "response": dict(base, status="completed", output=output,
                                                  usage=usage)}


def _handler_for(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # -- plumbing --
        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Content-Encoding", "") in ("zstd", "gzip", "br"):
                raw = _decompress(raw, self.headers["Content-Encoding"])
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            return body if isinstance(body, dict) else {"_json": body}

        def _json(self, obj: Any, status: int = 200) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, events: Iterator[tuple[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for name, data in events:
                    if isinstance(data, float):
                        time.sleep(data)
                        continue
                    chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        # -- routes --
        def _new(self, api: str, body: dict[str, Any], main: bool) -> Request:
            """Record a request; `/agent/NAME/…` routes it to NAME's queue."""
            agent = ""
            if self.path.startswith("/agent/"):
                agent = self.path.split("/", 3)[2]
            return model._record(Request(api, self.command, self.path, body, main=main,
                                         agent=agent))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            model._finish(self._new("other", {}, main=False))
            if path.endswith("/models"):
                # Codex's model list (and an OpenAI-style list for anything else).
                self._json({"models": [], "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self._json({})

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body()
            if path.endswith("/messages/count_tokens"):
                model._finish(self._new("anthropic", body, main=False))
                self._json({"input_tokens": 10 + len(json.dumps(body)) // 4})
            elif path.endswith("/messages"):
                req = self._new("anthropic", body, main=bool(body.get("tools")))
                turn = req.turn or Text(SIDE_ANSWER)
                name = str(body.get("model") or "claude-fake")
                try:
                    if body.get("stream"):
                        self._sse(anthropic_events(model, turn, name))
                    else:
                        self._json(anthropic_message(model, turn, name))
                finally:
                    model._finish(req)
            elif path.endswith("/responses"):
                req = self._new("responses", body, main=bool(body.get("tools")))
                turn = req.turn or Text(SIDE_ANSWER)
                try:
                    self._sse(responses_events(model, turn, str(body.get("model") or "fake")))
                finally:
                    model._finish(req)
            else:
                model._finish(self._new("other", body, main=False))
                self._json({})

    return Handler


def _decompress(raw: bytes, encoding: str) -> bytes:
    import gzip

    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            return raw
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
    return raw
