"""The peers' checks for `agent-mesh doctor`: can each peer be reached over the transport
notify-pane would use (host key checked, never added), does its agent-mesh answer, and
how fresh is our last good copy of its agents.

Peers are probed through a mesh Group started first (`PeerProbes`) and collected
after this host's checks, bounded by one deadline, so a mesh with dead hosts still
answers in under five seconds (an abandoned probe never delays exit).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent_mesh import paths
from agent_mesh.errors import Cause, MeshError, UsageError, report
from agent_mesh.mesh.transport import Host
from agent_mesh.ops.checks import Check, ago, fail, ok, stamp_age, tilde, warn
from agent_mesh.ops.host_checks import STALE_AFTER
from agent_mesh.registry.view import read_slice_file

PEER_BUDGET = 4.5  # seconds for all peer probes together (they run in parallel)


def _peer_failure(alias: str, exc: MeshError) -> Check:
    """A transport's failure, with the fix for its machine cause (errors.Cause)."""
    detail = report(exc)[0].removeprefix(f"{alias}: ")
    name = f"peer:{alias}"
    cause = exc.cause
    if cause == Cause.HOST_KEY_UNKNOWN:
        detail = detail.split(". Check and add it", 1)[0]  # the fix says it
        fix = f"check the key's fingerprint, then accept it once: ssh {alias} true"
    elif cause == Cause.NO_HANDSHAKE:
        fix = f"check HostName and Port of `Host {alias}` in ~/.ssh/config, and that sshd runs"
    elif cause == Cause.HOST_KEY_CHANGED:
        fix = (f"if {alias} was reinstalled, verify its new key, then ssh-keygen -R HOST "
               f"and ssh {alias} true")
    elif cause == Cause.AUTH_FAILED:
        fix = f"ssh-copy-id {alias} (then check: ssh {alias} true)"
    elif cause == Cause.UNKNOWN_HOST:
        fix = f"add a `Host {alias}` block with its HostName to ~/.ssh/config"
    elif cause == Cause.NOT_INSTALLED:
        detail = detail.split(" (run install.sh", 1)[0]
        fix = f"run ./install.sh on {alias}"
    elif cause == Cause.VERSION_MISMATCH:
        fix = "git pull && ./install.sh on both hosts"
    elif cause == Cause.NO_ANSWER:
        fix = f"run agent-mesh doctor on {alias}"
    else:
        fix = f"check that {alias} is up and `ssh {alias} true` works"
    return fail(name, detail, fix)


class PeerProbes:
    """`hello` to every peer in parallel (a mesh Group), started now and collected by
    `results` within PEER_BUDGET of the start, over the transport notify-pane would
    use (openssh, else paramiko): the caller runs this host's checks meanwhile."""

    def __init__(self, peers: list[str]) -> None:
        from agent_mesh.mesh.group import Group
        from agent_mesh.mesh.remote import chosen_transport, remote_transport

        self.peers = peers
        self.failed: Check | None = None
        self.running = None
        try:
            kind = chosen_transport()
        except MeshError as exc:
            self.failed = fail("peers", str(exc), "set AGENT_MESH_TRANSPORT or `transport` in "
                               "~/.agents/config.toml to openssh or paramiko")
            return
        if kind == "paramiko":
            from agent_mesh.mesh.paramiko import import_paramiko

            import_paramiko()  # ~150 ms once, not part of a peer's latency; and it
            # silences paramiko's thread tracebacks before any thread runs
        group = Group(peers, lambda alias: remote_transport(alias, kind))
        self.running = group.start(_probe)

    def results(self) -> dict[str, Check]:
        """One check per peer: its answer, or why there is none."""
        if self.running is None:
            assert self.failed is not None
            return {alias: fail(f"peer:{alias}", self.failed.detail, self.failed.fix)
                    for alias in self.peers}
        answers = self.running.wait(PEER_BUDGET)
        checks: dict[str, Check] = {}
        for alias, answer in answers.items():
            if alias in self.running.late:
                checks[alias] = fail(f"peer:{alias}", f"no answer within {PEER_BUDGET:g} s",
                                     f"check that {alias} is up and `ssh {alias} true` "
                                     "answers quickly")
            elif isinstance(answer, MeshError):  # the transport could not even be set up
                checks[alias] = _peer_failure(alias, answer)
            else:
                checks[alias] = answer
        return checks


def _probe(host: Host) -> Check:
    try:
        return check_peer(host)
    except Exception as exc:  # a bug must still be one line of the report
        return fail(f"peer:{host.host}", f"doctor error: {type(exc).__name__}: {exc}",
                    "report this as an agent-mesh bug")


def check_peer(host: Host, budget: float = PEER_BUDGET) -> Check:
    """Ask the peer's agent-mesh `hello` (the host key checked, never added); say how
    long it took, and for OpenSSH whether a control master was up."""
    from agent_mesh.mesh.openssh import OpenSshTransport
    from agent_mesh.mesh.paramiko import ParamikoTransport

    alias = host.host
    started = time.monotonic()
    try:
        if isinstance(host, OpenSshTransport):
            was_up = host.master_up()
            asked = time.monotonic()
            reply = host.request({"op": "hello"}, timeout=max(0.5, budget - (asked - started)))
            answered = time.monotonic()
            now_up = was_up or host.master_up()
            master = ("master was up" if was_up else "master started" if now_up else
                      "no master (connection reuse is off)")
            how = f"via openssh ({master}), host key known,"
        else:
            assert isinstance(host, ParamikoTransport)
            host.connect()
            asked = time.monotonic()
            reply = host.call({"op": "hello"}, timeout=max(0.5, budget - (asked - started)))
            answered = time.monotonic()
            how = f"via paramiko, host key known, connect {(asked - started) * 1000:.0f} ms,"
    except MeshError as exc:
        return _peer_failure(alias, exc)
    HELLO[alias] = reply
    theirs = str(reply.get("host", ""))
    if theirs != alias:
        return fail(f"peer:{alias}", f"reachable, but it calls itself {theirs!r} in its "
                    f"~/.agents/self.conf, so its slice is rejected here",
                    f"on {alias}: echo {alias} > ~/.agents/self.conf")
    return ok(f"peer:{alias}", f"reachable {how} agent-mesh {reply.get('version', '?')} "
              f"(same as here) answered in {(answered - asked) * 1000:.0f} ms")


HELLO: dict[str, dict[str, Any]] = {}  # each peer's answer to `hello`, for check_trust


def check_trust(alias: str) -> Check:
    """Does this host reach alias with a restricted mesh key (issue 18)? The peer's own
    answer to `hello` says so: its rpc ran as the key's forced command, and took us for
    whom."""
    from agent_mesh.mesh.meshkey import key_path, mesh_key_for
    from agent_mesh.registry.naming import self_alias

    name = f"trust:{alias}"
    reply = HELLO.get(alias)
    me = self_alias()
    if reply is not None and reply.get("mesh_key"):
        caller = str(reply.get("caller", ""))
        if caller != me:
            return fail(name, f"the mesh key reaches {alias}, but it takes this host for "
                        f"{caller!r}", f"agent-mesh trust remove {alias}; "
                        f"agent-mesh trust add {alias}")
        return ok(name, f"reached with a restricted mesh key (verified there as {me})")
    fix = (f"agent-mesh trust add {alias}" if Path(key_path()).exists() else
           f"agent-mesh trust init && agent-mesh trust add {alias}")
    if reply is None:
        return warn(name, "not checked (the peer did not answer)", fix)
    if mesh_key_for(alias):
        return warn(name, f"{alias} was reached with a login key although this host has "
                    "a mesh key for it: the key's line is missing there", fix)
    return warn(name, "reached with an unrestricted login key: a compromised host here "
                f"is a shell on {alias}, and {alias} cannot verify who sends", fix)


def check_slice(alias: str, now: float) -> Check:
    """How fresh our last good copy of the peer's agents is."""
    name = f"slice:{alias}"
    path = Path(paths.slices_dir()) / f"{alias}.toml"
    if not path.exists():
        return warn(name, "never fetched", "agent-mesh sync (once the peer check passes)")
    try:
        meta, agents = read_slice_file(path)
    except UsageError:
        return warn(name, f"{tilde(path)} is not valid TOML", "agent-mesh sync (rewrites it)")
    fetched = str(meta.get("fetched", ""))
    age = stamp_age(fetched, now)
    when = ago(age) if age is not None else "never"
    if meta.get("stale"):
        error = str(meta.get("error", "")).removeprefix(f"{alias}: ")
        return warn(name, f"stale: keeping {len(agents)} agent(s) fetched {when}"
                     + (f"; last error: {error[:120]}" if error else ""),
                     "agent-mesh sync (once the peer check passes)")
    if age is None or age > STALE_AFTER:
        return warn(name, f"{len(agents)} agent(s), fetched {when}: timer not running?",
                     "agent-discover (and see the timer check)")
    return ok(name, f"{len(agents)} agent(s), fetched {when}")
