"""agent-mesh benchmarks: medians and ratios against the bash tool's way, in one run.

    .venv/bin/python bench/run.py [--rounds N] [--only hook,local,remote]

Each benchmark runs ours and its baseline alternately in the same process on
the same private tmux server, so machine load affects both alike, and prints
medians, p90s and the ratio ours/baseline with the target. Baselines live in
bench/baseline/ and do the work the way the bash tool does (per-window tmux
calls; `send-keys -l` then `send-keys Enter`). Results also go to
bench/results/latest.json. The remote benchmarks build the test lab (three
network-namespace hosts with their own sshd; needs root) and skip without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "bench" / "baseline"
BIN = Path(sys.executable).parent
HOST = "bench"

RECEIVER = """
import json, readline, sys
log = sys.argv[1]
while True:
    line = input('>>> ')
    with open(log, 'a') as fh:
        fh.write(json.dumps(line) + '\\n')
"""


@dataclass
class Result:
    name: str
    target: float
    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


class Sandbox:
    """A private HOME and tmux server, so the benchmark never touches the user's."""

    def __init__(self, label: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"amb{label}", dir="/tmp"))
        self.home = self.base / "h"
        (self.home / ".agents").mkdir(parents=True)
        (self.home / ".agents" / "self.conf").write_text(f"{HOST}\n")
        hooks = self.home / ".local" / "share" / "agent-mesh" / "hooks"
        hooks.mkdir(parents=True)
        shutil.copy2(REPO / "agent_mesh/ops/data/tmux-event", hooks / "tmux-event")
        local_bin = self.home / ".local" / "bin"
        local_bin.mkdir(parents=True)
        for script in ("agent-register-hook", "notify-pane", "agent-discover"):
            (local_bin / script).symlink_to(BIN / script)
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "AGENT_NAME")
        }
        self.env.update(
            HOME=str(self.home),
            TMUX_TMPDIR=str(self.base),
            PATH=f"{local_bin}:{BIN}:{os.environ.get('PATH', '')}",
            LANG="C.UTF-8",
        )

    def run(self, argv: list[str], extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        env = {**self.env, **(extra_env or {})}
        return subprocess.run(argv, env=env, capture_output=True, check=False)

    def tmux(self, *args: str) -> str:
        out = self.run(["tmux", *args])
        if out.returncode != 0:
            raise RuntimeError(f"tmux {args[0]}: {out.stderr.decode().strip()}")
        return out.stdout.decode()

    def close(self) -> None:
        self.run(["tmux", "kill-server"])
        shutil.rmtree(self.base, ignore_errors=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench_hook(rounds: int) -> Result:
    """The register hook for a 6-window session, invoked the way tmux runs it (sh -c)."""
    box = Sandbox("h")
    try:
        box.tmux("-f", "/dev/null", "new-session", "-d", "-s", "dev", "-n", "editor")
        for name in ("build", "tests", "claude", "codex", "logs"):
            box.tmux("new-window", "-d", "-t", "dev:", "-n", name)
        ours_cmd = ["sh", "-c", "~/.local/share/agent-mesh/hooks/tmux-event session-created"]
        base_cmd = ["sh", "-c", f"{BASELINE / 'register-hook.sh'} on dev"]
        for cmd in (ours_cmd, base_cmd):  # warm up, and check both register 6 windows
            box.run(cmd)
            text = (box.home / ".agents" / "local.toml").read_text()
            count = text.count("[agents.")
            if count != 6:
                raise RuntimeError(f"{cmd[-1]} registered {count} windows, expected 6")
        result = Result("register hook, 6-window session", target=0.25)
        for i in range(rounds):
            pair = [(result.ours, ours_cmd), (result.baseline, base_cmd)]
            for bucket, cmd in pair if i % 2 == 0 else reversed(pair):
                bucket.append(timed(lambda cmd=cmd: box.run(cmd)))
        return result
    finally:
        box.close()


def bench_local_delivery(rounds: int) -> Result:
    """notify-pane to an idle pane on this host: sender's wall time, and time to submit."""
    box = Sandbox("d")
    log = box.base / "got.jsonl"
    try:
        box.tmux("-f", "/dev/null", "new-session", "-d", "-s", "dev", "-n", "py",
                 sys.executable, "-q", "-c", RECEIVER, str(log), ";",
                 "set-option", "-w", "-t", "dev:py", "@agent-accept", "python3")
        box.run([str(BIN / "agent-discover")])
        address = f"{HOST}-dev-py"
        deadline = time.monotonic() + 10
        while ">>>" not in box.tmux("capture-pane", "-p", "-t", "dev:py"):
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not start")
            time.sleep(0.05)
        result = Result("local delivery to an idle pane", target=1.5)
        landed: dict[str, list[float]] = {"ours": [], "baseline": []}
        runners = {
            "ours": lambda body: box.run([str(BIN / "notify-pane"), address, body]),
            # The bash tool's own check refuses a `>>>` prompt; skipping it favours it.
            "baseline": lambda body: box.run(
                [str(BASELINE / "notify-pane.sh"), address, body],
                extra_env={"FORCE_SEND": "1"},
            ),
        }
        for i in range(rounds + 1):
            order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
            for who in order:
                body = f"{who} round {i} tests green"
                start = time.perf_counter()
                out = runners[who](body)
                sent = (time.perf_counter() - start) * 1000
                if out.returncode != 0:
                    raise RuntimeError(f"{who} failed: {out.stderr.decode().strip()}")
                while body not in (log.read_text() if log.exists() else ""):
                    if (time.perf_counter() - start) > 10:
                        raise RuntimeError(f"{who} message never submitted")
                    time.sleep(0.002)
                done = (time.perf_counter() - start) * 1000
                if i == 0:
                    continue  # warm-up round
                (result.ours if who == "ours" else result.baseline).append(sent)
                landed[who].append(done)
                time.sleep(0.35)  # let the settle pass: every send meets an idle pane
        result.extra = {
            "submitted_ours_ms": statistics.median(landed["ours"]),
            "submitted_baseline_ms": statistics.median(landed["baseline"]),
        }
        return result
    finally:
        box.close()


def _remote_lab() -> Any:
    """A 3-host namespace lab (tests/lab), or None with the reason printed."""
    sys.path.insert(0, str(REPO / "tests"))
    from lab.netlab import Lab, lab_available

    reason = lab_available()
    if reason is not None:
        print(f"remote benchmarks skipped: {reason}")
        return None
    lab = Lab(n_hosts=3)
    lab.start()
    return lab


def bench_remote(rounds: int) -> list[Result]:
    """Remote message, remote file drop and 3-host sync on real namespace hosts.

    Sender h2, recipient a python prompt on h1; baselines copied into h2's HOME
    and run as h2's user, like ours.
    """
    lab = _remote_lab()
    if lab is None:
        return []
    try:
        h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
        python = str(lab.venv / "bin" / "python")
        log = h1.home / "got.jsonl"
        h1.tmux("new-window", "-d", "-t", "main:", "-n", "py", python, "-q", "-c", RECEIVER,
                str(log), ";", "set-option", "-w", "-t", "main:py", "@agent-accept", "python3")
        for host in lab.hosts.values():
            host.run(["agent-discover"], check=True)
        for name in ("notify-pane.sh", "sync.sh"):
            shutil.copy2(BASELINE / name, h2.home / name)
            os.chown(h2.home / name, h2.uid, h2.gid)
        payload = h2.home / "payload.bin"
        payload.write_bytes(os.urandom(10_000))
        os.chown(payload, h2.uid, h2.gid)
        address = "h1-main-py"
        message = Result("remote message (h2 -> h1)", target=0.35)
        drop = Result("remote file drop, 10 KB (h2 -> h1)", target=0.3)
        for i in range(rounds + 1):
            for result, extra in ((message, []), (drop, ["--file", str(payload)])):
                order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
                for who in order:
                    body = f"{who} {i} remote"
                    argv = (["notify-pane", address, *extra, body] if who == "ours" else
                            ["./notify-pane.sh", address, *extra, body])
                    env = {"FORCE_SEND": "1"} if who == "baseline" else None
                    start = time.perf_counter()
                    out = h2.run(argv, env=env)
                    elapsed = (time.perf_counter() - start) * 1000
                    if out.returncode != 0:
                        raise RuntimeError(f"{who}: {out.stderr.decode().strip()}")
                    deadline = time.monotonic() + 10
                    while body not in (log.read_text() if log.exists() else ""):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{who} remote message never submitted")
                        time.sleep(0.005)
                    if i:
                        (result.ours if who == "ours" else result.baseline).append(elapsed)
                    time.sleep(0.3)
        sync = Result("3-host sync (from h2)", target=0.3)
        for i in range(rounds + 1):
            pair = [("ours", ["agent-mesh", "sync"]), ("baseline", ["./sync.sh"])]
            for who, argv in pair if i % 2 == 0 else reversed(pair):
                start = time.perf_counter()
                out = h2.run(argv)
                elapsed = (time.perf_counter() - start) * 1000
                if out.returncode != 0:
                    raise RuntimeError(f"{who} sync: {out.stderr.decode().strip()}")
                if i:
                    (sync.ours if who == "ours" else sync.baseline).append(elapsed)
        return [message, drop, sync]
    finally:
        lab.stop()


def bench_delegate(rounds: int) -> list[Result]:
    """Broadcast to 12 agents on 3 hosts against one remote message (both ours), and how
    soon a queued message lands once its pane is ready (against a 1 s budget)."""
    lab = _remote_lab()
    if lab is None:
        return []
    try:
        python = str(lab.venv / "bin" / "python")
        logs: list[Path] = []
        for host in lab.hosts.values():
            for k in range(4):
                log = host.home / f"r{k}.jsonl"
                host.tmux("new-window", "-d", "-t", "main:", "-n", f"r{k}", python, "-q", "-c",
                          RECEIVER, str(log))
                host.tmux("set-option", "-w", "-t", f"main:r{k}", "@agent-role", "bench")
                host.tmux("set-option", "-w", "-t", f"main:r{k}", "@agent-accept", "python3")
                logs.append(log)
        time.sleep(1.0)
        for _ in range(2):
            for host in lab.hosts.values():
                host.run(["agent-discover"], check=True)
        h1, h2 = lab.hosts["h1"], lab.hosts["h2"]

        def landed(paths: list[Path], body: str) -> None:
            deadline = time.monotonic() + 15
            while not all(p.exists() and body in p.read_text() for p in paths):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{body!r} never reached every recipient")
                time.sleep(0.005)

        fan = Result("broadcast, 12 agents on 3 hosts (vs one remote message)", target=1.5)
        for i in range(rounds + 1):
            pair = [("ours", "role:bench", logs), ("baseline", "h1-main-r0", [logs[0]])]
            for who, address, paths in pair if i % 2 == 0 else reversed(pair):
                body = f"{who} {i} fan"
                start = time.perf_counter()
                out = h2.run(["notify-pane", address, body])
                if out.returncode != 0:
                    raise RuntimeError(f"{who}: {out.stdout.decode()}{out.stderr.decode()}")
                landed(paths, body)
                elapsed = (time.perf_counter() - start) * 1000
                if i:
                    (fan.ours if who == "ours" else fan.baseline).append(elapsed)
                time.sleep(0.3)
        queued = Result("queued message, ready -> submitted (vs 1 s budget)", target=1.0)
        for i in range(min(rounds, 10)):
            h1.tmux("send-keys", "-t", "main:r1", "-l", "a draft")
            time.sleep(0.3)
            body = f"queued {i}"
            out = h2.run(["notify-pane", "--queue", "h1-main-r1", body])
            if out.returncode != 5:
                raise RuntimeError(f"not queued: {out.stdout.decode()}{out.stderr.decode()}")
            time.sleep(0.5)
            start = time.perf_counter()
            h1.tmux("send-keys", "-t", "main:r1", "C-u")
            landed([logs[1]], body)
            queued.ours.append((time.perf_counter() - start) * 1000)
            queued.baseline.append(1000.0)
            time.sleep(0.3)
        return [fan, queued]
    finally:
        lab.stop()


BENCHMARKS: dict[str, Callable[[int], list[Result]]] = {
    "hook": lambda n: [bench_hook(n)],
    "local": lambda n: [bench_local_delivery(n)],
    "remote": bench_remote,
    "delegate": bench_delegate,
}


def report(results: list[Result]) -> None:
    print(f"{'benchmark':40} {'ours med':>9} {'p90':>7} {'base med':>9} {'p90':>7}"
          f" {'ratio':>7} {'target':>8}")
    for r in results:
        ok = "ok" if r.ratio <= r.target else "MISSED"
        print(f"{r.name:40} {statistics.median(r.ours):7.1f}ms {p90(r.ours):5.1f}ms"
              f" {statistics.median(r.baseline):7.1f}ms {p90(r.baseline):5.1f}ms"
              f" {r.ratio:6.2f}x  <={r.target:.2f}x {ok}")
        for key, value in r.extra.items():
            print(f"    {key}: {value:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    args = parser.parse_args()
    # An installed package has bytecode (pip compiles it); a dev checkout under
    # PYTHONDONTWRITEBYTECODE would recompile every module on every run instead.
    import compileall

    compileall.compile_dir(str(REPO / "agent_mesh"), quiet=1)
    results = [r for name in args.only.split(",") if name for r in BENCHMARKS[name](args.rounds)]
    report(results)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps([
        {"name": r.name, "ours_median_ms": statistics.median(r.ours),
         "baseline_median_ms": statistics.median(r.baseline), "ratio": r.ratio,
         "target": r.target, "rounds": len(r.ours), **r.extra} for r in results
    ], indent=2))
    return 0 if all(r.ratio <= r.target for r in results) else 1


# --- seeing the mesh: agent-mesh status ---------------------------------------------------


def bench_status_local(rounds: int) -> list[Result]:
    """`agent-mesh status` on this host with 20 agent panes, against a 100 ms budget.

    The baseline column is the budget itself (100 ms), so the ratio is ours/budget.
    """
    box = Sandbox("s")
    try:
        box.tmux("-f", "/dev/null", "new-session", "-d", "-s", "dev", "-n", "w0")
        for i in range(1, 20):
            argv = ([sys.executable, "-q", "-c", RECEIVER, str(box.base / f"{i}.jsonl")]
                    if i % 2 else ["bash", "--norc", "--noprofile"])
            box.tmux("new-window", "-d", "-t", "dev:", "-n", f"w{i}", *argv)
        box.run([str(BIN / "agent-discover")])
        cmd = [str(BIN / "agent-mesh"), "status", "--json"]
        out = box.run(cmd)
        rows = json.loads(out.stdout)["agents"] if out.returncode == 0 else []
        if len(rows) != 20:
            raise RuntimeError(f"status listed {len(rows)} agents, expected 20: {out.stderr!r}")
        result = Result("local status, 20 panes (vs 100 ms budget)", target=1.0)
        for i in range(rounds + 1):
            elapsed = timed(lambda: box.run(cmd))
            if i:
                result.ours.append(elapsed)
                result.baseline.append(100.0)
        return [result]
    finally:
        box.close()


def bench_status_remote(rounds: int) -> list[Result]:
    """`agent-mesh status` from h2 over 3 hosts x 6 agents, against one remote message
    (notify-pane h2 -> h1): the peers are asked in parallel, so it should cost about one."""
    lab = _remote_lab()
    if lab is None:
        return []
    try:
        python = str(lab.venv / "bin" / "python")
        h1, h2 = lab.hosts["h1"], lab.hosts["h2"]
        log = h1.home / "got.jsonl"
        for host in lab.hosts.values():
            for i in range(6):
                argv = ([python, "-q", "-c", RECEIVER, str(host.home / f"w{i}.jsonl")]
                        if i % 2 == 0 else ["bash", "--norc", "--noprofile"])
                host.tmux("new-window", "-d", "-t", "main:", "-n", f"w{i}", *argv)
            host.tmux("kill-window", "-t", "main:0")  # just the six
        h1.tmux("respawn-window", "-k", "-t", "main:w0", python, "-q", "-c", RECEIVER, str(log))
        for host in lab.hosts.values():
            host.run(["agent-discover"], check=True)
        for host in lab.hosts.values():
            host.run(["agent-mesh", "sync"])
        time.sleep(1.0)  # the receivers' prompts
        out = h2.run(["agent-mesh", "status", "--json"])
        rows = json.loads(out.stdout)["agents"] if out.returncode == 0 else []
        if len(rows) != 18:
            raise RuntimeError(f"status listed {len(rows)} agents, expected 18: {out.stderr!r}")
        result = Result("status, 3 hosts x 6 agents (vs 1 remote msg)", target=1.2)
        for i in range(rounds + 1):
            order = ["ours", "baseline"] if i % 2 == 0 else ["baseline", "ours"]
            for who in order:
                argv = (["agent-mesh", "status"] if who == "ours" else
                        ["notify-pane", "h1-main-w0", f"status bench {i}"])
                start = time.perf_counter()
                out = h2.run(argv)
                elapsed = (time.perf_counter() - start) * 1000
                if out.returncode != 0:
                    raise RuntimeError(f"{who}: {out.stderr.decode().strip()}")
                if i:
                    (result.ours if who == "ours" else result.baseline).append(elapsed)
                time.sleep(0.3)  # the message's settle: every send meets an idle prompt
        return [result]
    finally:
        lab.stop()


BENCHMARKS["status-local"] = bench_status_local
BENCHMARKS["status-remote"] = bench_status_remote


if __name__ == "__main__":
    sys.exit(main())
