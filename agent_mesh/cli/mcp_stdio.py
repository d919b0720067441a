"""The stdio front of `agent-mesh mcp`: the handshake answered while the SDK loads.

Importing the MCP SDK (pydantic models for two protocol versions, its server stack)
takes 0.3-0.6 s, longer than the 300 ms an agent CLI should wait for a server to
start and list its tools. So the process does two things at once:

- a reader thread reads the client's stdin. An `initialize` whose answer is in the
  handshake cache is answered at once from it, and a `tools/list` too, until the SDK
  runs; every message (the initialize included, so the SDK's session state is its
  own) goes on, in order, to the SDK through a pipe. The SDK's own answers to the
  messages already answered are dropped.
- the main thread imports the SDK and serves the session (mcp_server.build_server):
  every tool call, every other request is the SDK's. A filter thread copies its
  output to the client.

The cache holds the SDK's own earlier answers, keyed by everything they depend on
(this package's version, the tool list: the tools' names and descriptions and the
modules that define them, the installed SDK's version, the protocol version and
capabilities the client asked with): the first start after an install, an upgrade or
a new tool is a miss, served by the SDK alone, and fills it.
~/.agents/cache/mcp-handshake.json, a few keys at most. Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from agent_mesh import __version__, paths

KEEP = 4  # handshake keys kept (one per client version and protocol, in practice)


def cache_path() -> str:
    return os.path.join(paths.agents_dir(), "cache", "mcp-handshake.json")


def _sdk_versions() -> str:
    """The installed SDK's distributions (name-version.dist-info), found without
    importing it."""
    import importlib.util

    spec = importlib.util.find_spec("mcp")
    if spec is None or not spec.submodule_search_locations:
        return ""
    site = os.path.dirname(next(iter(spec.submodule_search_locations)))
    try:
        names = os.listdir(site)
    except OSError:
        return ""
    return ",".join(sorted(n for n in names if n.endswith(".dist-info")
                           and n.split("-", 1)[0] in ("mcp", "mcp_types", "pydantic")))


def tools_signature(files: list[str], docs: dict[str, str]) -> str:
    """What the tool list depends on beyond the versions: each module that defines tools
    (size and mtime: an edit in a checkout changes its arguments) and the tools' names and
    descriptions (a new tool is a new key even where the stamps cannot tell, e.g. an
    upgrade that keeps them)."""
    stamps = []
    for path in files:
        try:
            info = os.stat(path)
            stamps.append(f"{os.path.basename(path)}:{info.st_mtime_ns}:{info.st_size}")
        except OSError:
            stamps.append("")
    text = json.dumps([stamps, sorted(docs.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def handshake_key(params: Any, signature: str) -> str:
    asked = params if isinstance(params, dict) else {}
    wanted = {"v": __version__, "tools": signature, "sdk": _sdk_versions(),
              "protocol": asked.get("protocolVersion"), "caps": asked.get("capabilities")}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:32]


def _load_cache() -> dict[str, Any]:
    try:
        with open(cache_path(), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _entry(found: Any) -> dict[str, Any]:
    """A cache entry fit to answer from (both answers, each a JSON object), else {}: a
    hand-edited or half-foreign entry is a miss, never a reply lost or made up."""
    if isinstance(found, dict) and all(isinstance(found.get(kind), dict)
                                       for kind in ("initialize", "tools")):
        return found
    return {}


def _store(key: str, kind: str, result: Any) -> None:
    """Keep the SDK's answer; never fails the session (a full disk only costs speed)."""
    try:
        from agent_mesh.fsutil import atomic_write, make_dirs

        data = _load_cache()
        entry = data.pop(key, None)
        entry = entry if isinstance(entry, dict) else {}
        entry[kind] = result
        data[key] = entry  # most recent last
        while len(data) > KEEP:
            data.pop(next(iter(data)))
        make_dirs(os.path.dirname(cache_path()))
        atomic_write(cache_path(), json.dumps(data).encode(), mode=0o600)
    except Exception:
        pass


def _id_key(value: Any) -> str:
    return json.dumps(value)


class Front:
    """The reader and filter threads around the SDK's stdio server (see the module)."""

    def __init__(self, signature: str) -> None:
        self.signature = signature
        self.ready = threading.Event()  # the SDK serves: tools/list goes to it
        self.write_lock = threading.Lock()
        self.drop: set[str] = set()  # ids the SDK answers that the client already has
        self.capture: dict[str, tuple[str, str]] = {}  # id -> (cache key, kind)
        self.lock = threading.Lock()  # guards drop and capture
        self.key = ""
        self.cached: dict[str, Any] = {}
        self.learning = False  # a miss: the first tools/list answer is still to be kept

    def start(self) -> None:
        """Put the pipes under fds 0 and 1 (the SDK's stdio_server claims them as it
        would the real ones) and start the threads on private copies of the real ones."""
        import fcntl

        real_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        real_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        os.dup2(in_r, 0)
        os.dup2(out_w, 1)
        os.close(in_r)
        os.close(out_w)
        self.real_out = real_out
        self.to_sdk = in_w
        threading.Thread(target=self._read, args=(real_in,), daemon=True,
                         name="mcp-reader").start()
        self.filter = threading.Thread(target=self._filter, args=(out_r,), daemon=True,
                                       name="mcp-filter")
        self.filter.start()

    def finish(self) -> None:
        """After the SDK's session ended: let the filter pass on what is left."""
        try:
            os.write(1, b"\n")  # an empty line: the filter's end (never a message)
        except OSError:
            return
        self.filter.join(2.0)

    # --- to the client ---------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        with self.write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.real_out, view):]

    def _answer(self, msg_id: Any, result: Any) -> None:
        self._emit(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result},
                              separators=(",", ":")).encode() + b"\n")

    # --- the client's messages ---------------------------------------------------------

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as src:
            for line in src:
                try:
                    forward = self._route(line)
                except Exception:  # the SDK answers whatever this could not read
                    forward = True
                if forward:
                    try:
                        self._to_sdk(line)
                    except OSError:
                        return
        os.close(self.to_sdk)  # the client is gone: the SDK's session ends

    def _to_sdk(self, line: bytes) -> None:
        view = memoryview(line if line.endswith(b"\n") else line + b"\n")
        while view:
            view = view[os.write(self.to_sdk, view):]

    def _route(self, line: bytes) -> bool:
        """Answer from the cache what it holds; whether the SDK must see the line."""
        if self.ready.is_set() and not self.learning:
            return True
        if b'"method"' not in line or b'"id"' not in line:
            return True  # a notification or a response: the SDK's
        msg = json.loads(line)
        if not isinstance(msg, dict) or "id" not in msg:
            return True
        method, msg_id = msg.get("method"), msg["id"]
        if method == "initialize":
            self.key = handshake_key(msg.get("params"), self.signature)
            self.cached = _entry(_load_cache().get(self.key))
            if self.cached:
                with self.lock:
                    self.drop.add(_id_key(msg_id))
                self._answer(msg_id, self.cached["initialize"])
            else:
                self.cached = {}
                self.learning = True
                with self.lock:
                    self.capture[_id_key(msg_id)] = (self.key, "initialize")
            return True
        if method == "tools/list" and not (msg.get("params") or {}).get("cursor"):
            if self.cached and not self.ready.is_set():
                self._answer(msg_id, self.cached["tools"])
                return False
            if self.learning:
                self.learning = False
                with self.lock:
                    self.capture[_id_key(msg_id)] = (self.key, "tools")
        return True

    # --- the SDK's messages ------------------------------------------------------------

    def _filter(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as src:
            for line in src:
                if line == b"\n":
                    return
                if (self.drop or self.capture) and self._held(line):
                    continue
                self._emit(line)

    def _held(self, line: bytes) -> bool:
        """Drop the SDK's answer to a request the cache answered; note the answers the
        cache lacks. Whether the line stays with us."""
        try:
            msg = json.loads(line)
        except ValueError:
            return False
        if not isinstance(msg, dict) or "id" not in msg or "method" in msg:
            return False
        key = _id_key(msg["id"])
        with self.lock:
            if key in self.drop:
                self.drop.discard(key)
                return True
            wanted = self.capture.pop(key, None)
        if wanted is not None and "result" in msg:
            _store(wanted[0], wanted[1], msg["result"])
        return False


def serve(build: Callable[[], Any], signature: str) -> None:
    """Serve a session: the front's threads now, the SDK's server once `build` returns;
    `signature` (tools_signature) keys the handshake cache."""
    front = Front(signature)
    front.start()
    try:
        server = build()
        front.ready.set()
        server.run("stdio")
    finally:
        sys.stdout.flush()
        front.finish()
