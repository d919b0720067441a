"""The registry files without tmux: emitter, addresses, stamps, merge, atomic writes.

The emitter is hand-written for the hook's speed, so a seeded property test
checks that tomllib and tomlkit both read back exactly what it writes, for
strings full of control characters, quotes, backslashes and unicode.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
import tomlkit
from conftest import REPO

from agent_mesh import paths
from agent_mesh.fsutil import atomic_write, locked
from agent_mesh.model import Agent
from agent_mesh.registry import naming, scan, toml, view

# --- TOML round trip --------------------------------------------------------

_SPECIAL = [
    *"\"\\'#=[].{},\t\n\r\b\f\x00\x1b\x7f\x85\u2028\u2029\ufeff\ufffe",
    *('"""', "'''", "\\u0041", "\\n", "key = 1", "[agents.x]", "\r\n"),
]


def _random_char(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.3:
        return chr(rng.randrange(0, 0x80))  # ASCII including every C0 control and DEL
    if pick < 0.4:
        return chr(rng.randrange(0x80, 0x100))  # C1 controls, Latin-1
    if pick < 0.6:
        return rng.choice(_SPECIAL)
    if pick < 0.8:
        code = rng.randrange(0x100, 0xD800)  # BMP below the surrogates
    elif pick < 0.9:
        code = rng.randrange(0xE000, 0x10000)
    else:
        code = rng.randrange(0x10000, 0x110000)  # astral
    return chr(code)


def _random_text(rng: random.Random, longest: int = 40) -> str:
    return "".join(_random_char(rng) for _ in range(rng.randrange(0, longest)))


def _random_key(rng: random.Random) -> str:
    if rng.random() < 0.5:
        alphabet = "abcXYZ019_-"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
    return _random_text(rng, 12) or "empty-fallback"


@pytest.mark.parametrize("seed", range(6))
def test_emitter_round_trips_through_tomllib_and_tomlkit(seed: int) -> None:
    rng = random.Random(seed)
    groups: dict[str, dict[str, dict[str, object]]] = {}
    for _ in range(rng.randrange(1, 4)):
        group = _random_key(rng)
        tables = groups.setdefault(group, {})
        for _ in range(rng.randrange(1, 25)):
            table: dict[str, object] = {}
            for _ in range(rng.randrange(0, 8)):
                use_bool = rng.random() < 0.1
                table[_random_key(rng)] = rng.random() < 0.5 if use_bool else _random_text(rng)
            tables[_random_key(rng)] = table
    header = [_random_text(rng) for _ in range(3)]
    text = toml.dump_tables(header, groups)
    assert tomllib.loads(text) == groups
    assert tomlkit.parse(text).unwrap() == groups
    assert toml.read_own(text) == groups  # the hook's tomllib-free reader agrees


def test_every_code_point_round_trips() -> None:
    """All of the BMP except surrogates, plus astral samples, in one string each."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    chars += [chr(c) for c in range(0x10000, 0x110000, 997)]
    values = {f"k{i}": "".join(chars[i : i + 4096]) for i in range(0, len(chars), 4096)}
    text = toml.dump_tables([], {"agents": {"all": values}})
    assert tomllib.loads(text)["agents"]["all"] == values
    assert tomlkit.parse(text).unwrap()["agents"]["all"] == values
    assert toml.read_own(text) == {"agents": {"all": values}}


def test_lone_surrogates_become_replacement_chars() -> None:
    text = toml.dump_tables([], {"agents": {"x": {"window": "a\ud800b\udfffc"}}})
    assert tomllib.loads(text)["agents"]["x"]["window"] == "a\ufffdb\ufffdc"


@pytest.mark.parametrize(
    ("key", "written"),
    [
        ("testhost-dev-build", "testhost-dev-build"),
        ("A_b-9", "A_b-9"),
        ("host.example-dev-w", '"host.example-dev-w"'),
        ("", '""'),
        ("with space", '"with space"'),
        ("ünï", '"ünï"'),
        ('q"b\\', '"q\\"b\\\\"'),
    ],
)
def test_keys_bare_only_when_safe(key: str, written: str) -> None:
    assert toml.toml_key(key) == written
    text = toml.dump_tables([], {"agents": {key: {"host": "h"}}})
    assert f"[agents.{written}]" in text
    assert tomllib.loads(text)["agents"][key] == {"host": "h"}


def test_header_lines_with_controls_stay_comments() -> None:
    text = toml.dump_tables(["line\nwith\x1b[31mescapes\x7f\ttab"], {})
    assert text.count("\n") == 1 and text.startswith("# line?with?[31mescapes?\ttab")
    assert tomllib.loads(text) == {}


# --- addresses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Build", "build"),
        ("my build  (2)", "my-build-2"),
        ("--x--", "x"),
        ("a|b\tc\nd\x1be", "a-b-c-d-e"),
        ("ünïcødé", "ünïcødé"),  # letters of any script stay (issue 21.20)
        ("Ünï💥", "ünï"),
        ("u\u0308n", "ün"),  # NFD as typed on some systems: one letter
        ("ＡＢ ﬁle", "ab-file"),  # compatibility forms fold to what they read as
        ("日本語", "日本語"),
        ("हिन्दी", "हिन्दी"),  # vowel signs are combining marks: part of the word
        ("a\u202eb\u200dc", "a-b-c"),  # bidi and format characters never
        ("", ""),
        ("evil$(touch /tmp/pwned)", "evil-touch-tmp-pwned"),
    ],
)
def test_slug(name: str, expected: str) -> None:
    assert naming.slug(name) == expected


def test_slug_at_most_40_chars_and_never_ends_in_dash() -> None:
    assert naming.slug("x" * 100) == "x" * 40
    assert naming.slug("a" * 39 + " b") == "a" * 39
    assert all(len(naming.slug(n)) <= 40 for n in ("ab " * 50, "é" * 90 + "z" * 90))


def _window(session: str, index: int, name: str, **extra: str) -> dict[str, str]:
    fields = {
        "session_id": f"${abs(hash(session)) % 100}",
        "session_name": session,
        "window_id": f"@{index}",
        "window_index": str(index),
        "window_name": name,
        "pane_id": f"%{index}",
        "pane_current_command": "bash",
        "@agent-role": "",
        "@agent-scope": "",
        "socket_path": "/tmp/tmux-0/default",
    }
    fields.update(extra)
    return fields


def build(windows: list[dict[str, str]], host: str, taken: set[str], now: str,
          old_text: str = "") -> dict[str, dict[str, object]]:
    """scan.build_tables with the previous slice given as its text, as the hook reads it."""
    parsed = toml.parse_slice(old_text) if old_text else None
    previous, trusted = parsed if parsed else ({}, False)
    return scan.build_tables(windows, host, taken, now, previous, trusted)


def test_duplicate_slugs_get_stable_distinct_addresses() -> None:
    windows = [_window("dev", 3, "build"), _window("dev", 1, "Build"), _window("dev", 2, "x")]
    first = build(windows, "h", set(), "now")
    again = build(list(reversed(windows)), "h", set(), "now")
    assert list(first) == ["h-dev-build", "h-dev-x", "h-dev-build-2"]
    assert first == again
    assert first["h-dev-build"]["target"] == "dev:1"
    assert first["h-dev-build-2"]["target"] == "dev:3"


def test_colliding_session_and_window_slugs_never_share_a_table() -> None:
    windows = [_window("a-b", 0, "c"), _window("a", 0, "b-c"), _window("a", 1, "b c")]
    tables = build(windows, "h", set(), "now")
    assert sorted(tables) == ["h-a-b-c", "h-a-b-c-2", "h-a-b-c-3"]


def test_empty_names_and_host_alias() -> None:
    tables = build([_window("💥 ✨", 4, "")], "My Host!", set(), "now")
    assert list(tables) == ["my-host-session-win4"]
    assert naming.host_part("box.lan") == "box.lan"


@pytest.mark.parametrize(
    ("session", "scratch"),
    [
        ("scratch", True), ("tmp", True), ("temp", True), ("test", True), ("test-1", True),
        ("_hidden", True), ("testing", False), ("tmpl", False), ("my_test", False),
        ("Test", False), ("x_", False),
    ],
)
def test_scratch_sessions(session: str, scratch: bool) -> None:
    assert naming.is_scratch_session(session) is scratch
    tables = build([_window(session, 0, "w")], "h", set(), "now")
    assert (tables == {}) is scratch


@pytest.mark.parametrize(
    ("command", "role"),
    [
        ("claude", "Claude Code agent in s:w"),
        ("codex", "Codex agent in s:w"),
        ("bash", "Shell agent in s:w"),
        ("zsh", "Shell agent in s:w"),
        ("vim", "vim agent in s:w"),
        ("", "CLI agent in s:w"),
    ],
)
def test_inferred_role(command: str, role: str) -> None:
    assert naming.infer_role(command, "s", "w") == role


# --- updated stamps -----------------------------------------------------------


def _slice_text(tables: dict[str, dict[str, object]]) -> str:
    return toml.dump_tables(["x"], {"slice": {"meta": {"host": "h"}}, "agents": tables})


def test_updated_kept_only_for_unchanged_tables() -> None:
    windows = [_window("dev", 0, "a"), _window("dev", 1, "b")]
    old = build(windows, "h", set(), "2001-02-03T04:05:06Z")
    windows[1]["pane_current_command"] = "vim"
    new = build(windows, "h", set(), "2030-01-01T00:00:00Z", _slice_text(old))
    assert new["h-dev-a"]["updated"] == "2001-02-03T04:05:06Z"
    assert new["h-dev-b"]["updated"] == "2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "bad_stamp", ['"yesterday"', "5", '"2001-02-03T04:05:06Z" # c', '"2001-02-03 04:05:06Z"']
)
def test_hand_edited_stamp_is_replaced(bad_stamp: str) -> None:
    windows = [_window("dev", 0, "a")]
    old = _slice_text(build(windows, "h", set(), "2001-02-03T04:05:06Z"))
    edited = old.replace('updated = "2001-02-03T04:05:06Z"', f"updated = {bad_stamp}")
    new = build(windows, "h", set(), "2030-01-01T00:00:00Z", edited)
    assert new["h-dev-a"]["updated"] == "2030-01-01T00:00:00Z"


def test_names_that_look_like_tables_cannot_fool_the_stamp_reader() -> None:
    evil = '\n[agents.h-dev-a]\nupdated = "1999-01-01T00:00:00Z"\n'
    windows = [_window("dev", 0, "a"), _window("dev", 1, evil)]
    old = build(windows, "h", set(), "2001-02-03T04:05:06Z")
    text = _slice_text(old)
    parsed = tomllib.loads(text)["agents"]
    assert [t["window"] for t in parsed.values()] == ["a", evil]
    new = build(windows, "h", set(), "2030-01-01T00:00:00Z", text)
    assert {t["updated"] for t in new.values()} == {"2001-02-03T04:05:06Z"}


# --- consistency with the rest of the package ---------------------------------


def test_table_fields_match_agent_model() -> None:
    names = [name for name in Agent.FIELDS if name != "address"]
    assert tuple(names) == toml.FIELDS
    table = build([_window("dev", 0, "a")], "h", set(), "now")["h-dev-a"]
    agent = Agent.from_table("h-dev-a", table)
    assert agent.to_table() == table


def test_self_alias_from_self_conf_else_hostname(isolated_env: Path) -> None:
    assert naming.self_alias() == naming.self_alias() == "testhost"
    (isolated_env / ".agents" / "self.conf").unlink()
    assert naming.self_alias() == os.uname().nodename.split(".")[0]


# --- merge ------------------------------------------------------------------


def test_assemble_merges_peers_local_wins_and_marks_stale(isolated_env: Path) -> None:
    agents = isolated_env / ".agents"
    (agents / "local.toml").write_text(_slice_text({
        "testhost-dev-a": {"host": "testhost", "target": "dev:0", "pane_id": "%0"},
    }))
    slices = agents / "slices"
    slices.mkdir()
    (slices / "peer1.toml").write_text(toml.dump_tables([], {
        "slice": {"meta": {"host": "peer1", "fetched": "2020-01-01T00:00:00Z"}},
        "agents": {
            "peer1-x-y": {"host": "peer1", "target": "x:1", "stale": True, "last_seen": "z"},
            "testhost-dev-a": {"host": "peer1", "target": "spoof:0"},
        },
    }))
    (slices / "peer2.toml").write_text(toml.dump_tables([], {
        "slice": {"meta": {"host": "peer2", "stale": True, "fetched": "2020-01-01T00:00:00Z"}},
        "agents": {"peer2-x-y": {"host": "peer2", "target": "x:1", "unknown": "ignored"}},
    }))
    (slices / "broken.toml").write_text("[[[ not toml")
    (slices / ".peer3.toml.123.tmp").write_text("half")
    merged = view.reassemble()
    assert set(merged) == {"testhost-dev-a", "peer1-x-y", "peer2-x-y"}
    assert merged["testhost-dev-a"].target == "dev:0"
    assert not merged["peer1-x-y"].stale and merged["peer1-x-y"].last_seen == ""
    assert merged["peer2-x-y"].stale and merged["peer2-x-y"].last_seen == "2020-01-01T00:00:00Z"
    text = (agents / "registry.toml").read_text()
    assert "# Mesh: testhost peer1 peer2" in text
    assert view.load_agents() == merged


def _write_peer(agents: Path, alias: str, tables: dict[str, dict[str, object]],
                **meta: object) -> None:
    text = toml.dump_tables([], {"slice": {"meta": {"host": alias, **meta}}, "agents": tables})
    atomic_write(agents / "slices" / f"{alias}.toml", text.encode())


def test_peer_section_is_cached_until_a_slice_changes(isolated_env: Path) -> None:
    agents = isolated_env / ".agents"
    (agents / "slices").mkdir()
    _write_peer(agents, "p1", {"p1-a-b": {"host": "p1", "target": "a:0", "window": "b\n"}})
    _write_peer(agents, "p2", {"p2-a-b": {"host": "p2", "target": "a:0"}}, stale=True,
                fetched="2020-01-01T00:00:00Z")
    first = view.reassemble()
    cache = agents / ".peers.cache"
    assert cache.exists() and set(first) == {"p1-a-b", "p2-a-b"}
    assert first["p1-a-b"].window == "b\n" and first["p2-a-b"].stale
    assert view.reassemble() == first  # from the cache
    _write_peer(agents, "p1", {"p1-x-y": {"host": "p1", "target": "x:1"}})
    assert set(view.reassemble()) == {"p1-x-y", "p2-a-b"}
    cache.write_text(cache.read_text().replace("p1-x-y", "p1-x-z"))  # damaged: checksum fails
    assert set(view.reassemble()) == {"p1-x-y", "p2-a-b"}
    # This host's agents win a clash even when the peers come from the cache.
    (agents / "local.toml").write_text(_slice_text({"p1-x-y": {"host": "testhost",
                                                               "target": "t:0"}}))
    merged = view.reassemble()
    assert merged["p1-x-y"].host == "testhost" and len(merged) == 2
    (agents / "slices" / "p2.toml").unlink()
    assert set(view.reassemble()) == {"p1-x-y"}
    assert "# Mesh: testhost p1\n" in (agents / "registry.toml").read_text()


def test_hook_with_cached_peers_does_not_import_tomllib(isolated_env: Path) -> None:
    agents = isolated_env / ".agents"
    (agents / "slices").mkdir()
    _write_peer(agents, "p1", {"p1-a-b": {"host": "p1", "target": "a:0"}})
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from agent_mesh.cli import hook\nhook.main(['rescan'])\n"
        "print('tomllib' in sys.modules)"
    )
    runs = [subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                           text=True, check=True).stdout.strip() for _ in range(2)]
    assert runs == ["True", "False"]
    assert set(tomllib.loads((agents / "registry.toml").read_text())["agents"]) == {"p1-a-b"}


def test_malformed_entries_are_skipped_not_fatal(isolated_env: Path) -> None:
    (isolated_env / ".agents" / "registry.toml").write_text(
        '[agents.no-target]\nhost = "h"\n'
        '[agents.int-target]\nhost = "h"\ntarget = 5\n'
        '[agents.not-a-table]\n'
        '[agents.fine]\nhost = "h"\ntarget = "s:0"\nextra = [1, 2]\nstale = "yes"\n'
    )
    agents = view.load_agents()
    assert set(agents) == {"fine"}
    assert agents["fine"].target == "s:0" and agents["fine"].stale is True


# --- atomic writes and locks --------------------------------------------------


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.toml"
    atomic_write(target, b"one")
    atomic_write(str(target), b"two")
    assert target.read_bytes() == b"two"
    blocker = tmp_path / "d" / "dir.toml"
    blocker.mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(blocker, b"x")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dir.toml", "f.toml"]


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "r.toml"
    bodies = [
        toml.dump_tables([], {"agents": {f"a{i}": {"v": "x" * (i * 5000)}}}).encode()
        for i in range(1, 6)
    ]
    atomic_write(target, bodies[0])
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in bodies:
                bad.append(f"{len(data)} bytes")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            atomic_write(target, bodies[i % len(bodies)])
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert [p.name for p in tmp_path.iterdir()] == ["r.toml"]


def test_lock_excludes_and_times_out(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with locked(lock):
        started = time.monotonic()
        with pytest.raises(TimeoutError), locked(lock, timeout=0.2):
            pass
        assert time.monotonic() - started >= 0.2
    with locked(str(lock), timeout=1):
        pass


def test_agent_from_table_names_missing_fields() -> None:
    with pytest.raises(ValueError, match="'x' has no target"):
        Agent.from_table("x", {"host": "h"})
    with pytest.raises(ValueError, match="has no host or target"):
        Agent.from_table("x", {})


def test_registry_cache_follows_every_rewrite_and_hand_edit(isolated_env: Path) -> None:
    """notify-pane reads registry.toml through a marshal cache keyed by the file's
    identity: a rewrite by the store or a hand edit must never serve stale entries."""
    path = Path(paths.registry_file())
    path.write_text('[agents.h-s-a]\nhost = "h"\ntarget = "s:0"\n')
    assert list(view.load_agents()) == ["h-s-a"]
    assert Path(paths.registry_cache()).exists()
    assert list(view.load_agents()) == ["h-s-a"]  # served from the cache
    path.write_text('[agents.h-s-b]\nhost = "h"\ntarget = "s:1"\n')  # same size, new content
    assert list(view.load_agents()) == ["h-s-b"]
    Path(paths.registry_cache()).write_bytes(b"not marshal data")
    assert list(view.load_agents()) == ["h-s-b"]
    path.unlink()
    assert view.load_agents() == {}
