"""A new user's first ten minutes (issue 12): exit statuses, the daemon's life in a
terminal, subscribe before serve, and the paper cuts — all with real processes."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import warpd
from tests.daemon import TIMEOUT_UNIT, Daemon, ServeProcess, clean_env, warpd_command
from tests.delivery import wait_for
from tests.pty_process import PtyProcess
from tests.test_openai_chat import TEXT_WITH_USAGE
from tests.vt import Terminal
from warpd.daemon.pidfile import pid_file
from warpd.errors import PushRejected

# -- warpd push: exit statuses --------------------------------------------------

ANTHROPIC_OVERLOADED = b"".join(
    b"event: %s\ndata: %s\n\n" % (json.loads(e)["type"].encode(), e.encode())
    for e in (
        '{"type":"message_start","message":{"model":"claude-test","usage":{"input_tokens":5}}}',
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}',
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    )
)
# The stream stops before its finish_reason and [DONE]: cut off.
CUT_OFF = b"\n\n".join(TEXT_WITH_USAGE.split(b"\n\n")[:3]) + b"\n\n"


@pytest.mark.parametrize(
    ("data", "status", "said"),
    [
        (TEXT_WITH_USAGE, 0, ""),
        (ANTHROPIC_OVERLOADED, 4, "the provider reported an error: overloaded_error: Overloaded"),
        (CUT_OFF, 5, "completed as aborted: input ended before"),
        (b"data: {not json}\n\n", 1, "warning: line 1: "),
        (b"", 1, "warpd push: no stream in the input"),
        (b"\n\n", 1, "warpd push: no stream in the input"),
    ],
    ids=["ok", "provider-error", "aborted", "rejected", "empty", "blank"],
)
def test_push_exit_status_says_how_the_stream_ended(
    daemon: Daemon, data: bytes, status: int, said: str
) -> None:
    result = daemon.push(data=data)
    assert result.returncode == status, result.stderr
    assert said in result.stderr.decode()
    # --no-fail: the same message, exit 0.
    relaxed = daemon.push(None, "--no-fail", data=data)
    assert relaxed.returncode == 0
    assert said in relaxed.stderr.decode()


def test_push_escapes_what_the_provider_said(daemon: Daemon) -> None:
    # A provider's error message is a peer's text: it reaches stderr as one escaped line.
    hostile = ANTHROPIC_OVERLOADED.replace(
        b'"Overloaded"', b'"Over\\u001b[2Jloaded\\nfake line\\u202e"'
    )
    result = daemon.push(data=hostile)
    assert result.returncode == 4, result.stderr
    err = result.stderr.decode()
    assert "\x1b" not in err and "\u202e" not in err
    (line,) = [line for line in err.splitlines() if "provider reported" in line]
    assert line.endswith("Over\\x1b[2Jloaded\\nfake line\\u202e")


def test_strict_push_of_a_bad_event_exits_1_naming_its_line(daemon: Daemon) -> None:
    data = b"data: {not json}\n\n"
    result = daemon.push(None, "--strict", data=data)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("warpd push: line 1: "), result.stderr
    # Tolerant: the same event is a warning, and then there is no stream at all.
    result = daemon.push(data=data)
    assert result.stderr.decode().splitlines()[-1] == (
        "warpd push: no stream in the input: every event in it was irregular (see above)"
    )


def test_push_whose_stream_the_daemon_cut_off_at_shutdown_exits_5(short_tmp: Path) -> None:
    daemon = Daemon(short_tmp)
    watcher = daemon.subscriber()
    push = subprocess.Popen(warpd_command("push"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
    try:
        assert push.stdin is not None
        # The stream's first events, and no end: it is live when the daemon stops.
        push.stdin.write(b"\n\n".join(TEXT_WITH_USAGE.split(b"\n\n")[:3]) + b"\n\n")
        push.stdin.flush()
        while watcher.read_message()["type"] != "blocks":
            pass
        assert daemon.stop() == 0
        _, err = push.communicate(timeout=4 * TIMEOUT_UNIT)
    finally:
        watcher.close()
        push.kill()
        push.wait()
    # Completed as aborted, said once: status 5 as the README says, not 1.
    assert err.decode().splitlines() == [
        "warpd push: stream default/1 completed as aborted: daemon shutting down"
    ]
    assert push.returncode == 5


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _final_after_the_producer_goes(daemon: Daemon, sig: int) -> tuple[int, dict[str, Any]]:
    """Push the start of a stream, send ``sig`` to the push; its status and the final seen."""
    watcher = daemon.subscriber()
    # SIGINT as a terminal gives it, even when this test runs where it is ignored
    # (a background job of a non-interactive shell inherits SIGINT ignored).
    with subprocess.Popen(warpd_command("push"), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
                          preexec_fn=_default_sigint) as push:
        try:
            assert push.stdin is not None
            push.stdin.write(CUT_OFF)
            push.stdin.flush()
            while watcher.read_message()["type"] != "blocks":
                pass
            push.send_signal(sig)
            # Its stdin stays open while the signal is handled: an end of input
            # first would be another ending (a cut-off stream, status 5). Closed
            # after a while all the same, so that no read can hold the exit.
            try:
                push.wait(timeout=2 * TIMEOUT_UNIT)
            except subprocess.TimeoutExpired:
                pass
            push.communicate(timeout=4 * TIMEOUT_UNIT)
            final = watcher.messages_until_final()[-1]
        finally:
            watcher.close()
            push.kill()
            push.wait()
    return push.returncode, final


def test_ctrl_c_during_push_tells_subscribers_it_was_interrupted(daemon: Daemon) -> None:
    status, final = _final_after_the_producer_goes(daemon, signal.SIGINT)
    assert status == 130
    # In the user's words, not websockets' ("no close frame received or sent").
    assert final["aborted"] and final["abort_reason"] == "producer interrupted", final


def test_a_producer_that_vanishes_is_said_in_plain_words(daemon: Daemon) -> None:
    _, final = _final_after_the_producer_goes(daemon, signal.SIGKILL)
    assert final["abort_reason"] == "producer connection lost before the end of its stream"


def test_a_with_block_left_by_ctrl_c_is_interrupted_not_failed(daemon: Daemon) -> None:
    stream = warpd.Client(daemon.address).stream()
    with pytest.raises(KeyboardInterrupt), stream as s:
        s.push({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})
        raise KeyboardInterrupt
    assert s.final is not None and s.final.abort_reason == "producer interrupted"


def test_push_escapes_what_the_stream_says_in_its_lines_on_stderr(daemon: Daemon) -> None:
    # A provider's error message may hold anything: a title-setting OSC, a
    # screen clear, a bidi override, a newline starting a line of its own.
    evil = "Over\x1b]0;pwned\x07loaded\x1b[2J\u202egnp.exe\nwarpd push: forged\x9b"
    event = {"type": "error", "error": {"type": "overloaded_error", "message": evil}}
    data = b"event: error\ndata: " + json.dumps(event).encode() + b"\n\n"
    result = daemon.push(data=data)
    assert result.returncode == 4
    err = result.stderr.decode()
    assert err.splitlines() == [
        "warpd push: stream default/1: the provider reported an error: overloaded_error: "
        "Over\\x1b]0;pwned\\x07loaded\\x1b[2J\\u202egnp.exe\\nwarpd push: forged\\x9b"
    ], err


def test_push_without_a_daemon_exits_3_and_no_fail_makes_it_0(short_tmp: Path) -> None:
    env = clean_env(short_tmp)
    command = warpd_command("push", "--connect", f"unix:{short_tmp}/none.sock")
    for extra, status in (([], 3), (["--no-fail"], 0)):
        result = subprocess.run(command + extra, input=TEXT_WITH_USAGE, capture_output=True,
                                env=env, timeout=4 * TIMEOUT_UNIT)
        assert result.returncode == status
        assert "no warpd daemon at" in result.stderr.decode()


def test_a_usage_error_exits_2_with_the_commands_usage(daemon: Daemon) -> None:
    typos = (["push", "--sesion", "x"], ["subscribe", "--onse"], ["push", "--no-fail", "-z"])
    for command in typos:
        result = daemon.run(*command)
        assert result.returncode == 2
        err = result.stderr.decode()
        assert err.startswith(f"usage: warpd {command[0]} "), err
        assert "unrecognized arguments" in err


def test_push_help_documents_the_exit_statuses(daemon: Daemon) -> None:
    text = daemon.run("push", "--help", check=True).stdout.decode()
    for line in ("0    every stream", "2    usage error", "3    no daemon", "4    the provider",
                 "5    the stream was cut off", "--no-fail"):
        assert line in text


def test_rejections_name_no_command_line_flag(daemon: Daemon) -> None:
    """The daemon's reasons reach Python callers too: they don't speak of --flags."""
    with pytest.raises(PushRejected, match="cannot tell the stream's format") as info:
        warpd.Client(daemon.address).push([{"hello": "world"}], strict=True)
    assert "--" not in str(info.value)
    # Tolerant, the same reason comes as a warning.
    with warpd.Client(daemon.address).stream() as stream:
        stream.push({"hello": "world"})
    (warning,) = stream.warnings
    assert "cannot tell the stream's format" in warning.message and "--" not in warning.message


def test_convert_of_empty_input_says_so(daemon: Daemon) -> None:
    result = daemon.run("convert", data=b"\n")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "warpd convert: no stream in the input"


def test_every_session_and_format_option_says_its_default(daemon: Daemon) -> None:
    for command, wanted in (
        ("push", ("session to push to (default: default)",
                  "the provider format (default: auto, detected from the first event)")),
        ("demo", ("session to push to (default: default)",)),
        ("subscribe", ("* = all; default: default)",)),
    ):
        text = " ".join(daemon.run(command, "--help", check=True).stdout.decode().split())
        for phrase in wanted:
            assert phrase in text, (command, text)


def test_convert_options_have_help(daemon: Daemon) -> None:
    text = daemon.run("convert", "--help", check=True).stdout.decode()
    assert "the provider format (default: auto, detected from the first event)" in " ".join(
        text.split()
    )
    assert "stream ids" in text


def test_a_broker_without_the_redis_extra_says_how_to_add_it(short_tmp: Path) -> None:
    """Installed as the README says (`pipx install .`), warpd has no Redis client: the
    message names commands that add it to this warpd, not a PyPI package."""
    config = short_tmp / "config.toml"
    config.write_text('[broker]\nurl = "redis://127.0.0.1:1/0"\n')
    no_redis = ("import sys; sys.modules['redis'] = None; "
                "from warpd.cli.main import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run(
        [sys.executable, "-c", no_redis, "serve", "--config", str(config),
         "--listen", f"unix:{short_tmp}/w.sock"],
        capture_output=True, env=clean_env(short_tmp), timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("warpd serve: [broker] url needs the Redis client"), err
    assert "`pipx inject warpd redis`" in err and "--with redis ." in err
    assert "'warpd[redis]'" not in err


# -- warpd serve in a terminal, under systemd; warpd reload ------------------------


def serve(short_tmp: Path, *args: str, **env: str) -> ServeProcess:
    process = ServeProcess(short_tmp, "--listen", f"unix:{short_tmp}/w.sock", *args,
                           env=clean_env(short_tmp, **env))
    process.wait_listening()
    return process


def test_sighup_stops_a_daemon_started_in_a_terminal(short_tmp: Path) -> None:
    daemon = serve(short_tmp)
    assert pid_file(short_tmp / "w.sock").read_text().strip() == str(daemon.process.pid)
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.finish() == 0
    log = daemon.log()
    assert "SIGHUP (the terminal closed): shutting down" in log and "Traceback" not in log
    assert not (short_tmp / "w.sock").exists()
    assert not pid_file(short_tmp / "w.sock").exists()


def test_sighup_stops_a_daemon_in_a_terminal_that_inherited_invocation_id(
    short_tmp: Path,
) -> None:
    # A shell in a tmux server started by a user unit has INVOCATION_ID, and a
    # controlling terminal: closing it means stop, as for any terminal.
    master, slave = pty.openpty()
    terminal = os.ttyname(slave)
    try:
        daemon = ServeProcess(
            short_tmp, "--listen", f"unix:{short_tmp}/w.sock",
            env=clean_env(short_tmp, INVOCATION_ID="0123abcd"), stdin=slave,
            # A session of its own whose controlling terminal is the pty.
            start_new_session=True, preexec_fn=lambda: os.close(os.open(terminal, os.O_RDWR)),
        )
        daemon.wait_listening()
        daemon.process.send_signal(signal.SIGHUP)
        assert daemon.finish() == 0
        assert "SIGHUP (the terminal closed): shutting down" in daemon.log()
    finally:
        os.close(slave)
        os.close(master)


def test_a_closing_terminal_s_two_hangups_still_stop_the_daemon_gracefully(
    short_tmp: Path,
) -> None:
    """A terminal that closes sends SIGHUP twice (the shell passes its own on to its
    jobs, then the kernel signals the foreground group as the shell exits): that is
    one request to stop, not an impatient second one. With a stream live, the daemon
    still completes it as aborted, tells its producer, and removes its socket."""
    daemon = serve(short_tmp)
    address = f"unix:{short_tmp}/w.sock"
    push = subprocess.Popen(
        warpd_command("push", "--connect", address), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env,
    )
    assert push.stdin is not None
    push.stdin.write(CUT_OFF)
    push.stdin.flush()
    daemon.wait_for_log("push session=default")

    def live() -> list[str]:
        status = json.loads(daemon.run("status", "--json", "--connect", address).stdout)
        return [s for session in status["sessions"] for s in session["live_streams"]]

    wait_for(lambda: live() == ["default/1"], "the stream to be live")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.finish() == 0, daemon.log()
    assert "exiting now" not in daemon.log()
    assert not (short_tmp / "w.sock").exists()
    _, err = push.communicate(timeout=4 * TIMEOUT_UNIT)
    # The stream was cut off by the daemon shutting down: status 5, said once.
    assert push.returncode == 5, err
    assert err.decode().strip().splitlines() == [
        "warpd push: stream default/1 completed as aborted: daemon shutting down"
    ]


@pytest.mark.parametrize("variable", ["NOTIFY_SOCKET", "INVOCATION_ID"])
def test_sighup_reloads_under_systemd(short_tmp: Path, variable: str) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(short_tmp / "notify"))
    value = str(short_tmp / "notify") if variable == "NOTIFY_SOCKET" else "0123abcd"
    try:
        # As a service: no controlling terminal (a session of its own).
        with ServeProcess(short_tmp, "--listen", f"unix:{short_tmp}/w.sock",
                          env=clean_env(short_tmp, **{variable: value}),
                          start_new_session=True) as daemon:
            daemon.wait_listening()
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for_log("reloaded the configuration from")
            time.sleep(0.2)
            assert daemon.process.poll() is None
            assert daemon.run("status", "--connect", f"unix:{short_tmp}/w.sock").returncode == 0
    finally:
        notify.close()


def test_warpd_reload_asks_the_running_daemon(short_tmp: Path) -> None:
    config = short_tmp / "config.toml"
    config.write_text("[limits]\nmax_sessions = 10\n")
    address = f"unix:{short_tmp}/w.sock"
    with serve(short_tmp, "--config", str(config)) as daemon:
        config.write_text("[limits]\nmax_sessions = 20\n")
        result = daemon.run("reload", "--connect", address)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == (
            f"warpd (pid {daemon.process.pid}): reloaded the configuration from {config}"
        )
        daemon.wait_for_log("reloaded the configuration from")
        # A bad file: said, the old configuration kept, the daemon serving on.
        config.write_text("[limits]\nmax_sesions = 30\n")
        result = daemon.run("reload", "--connect", address)
        assert result.returncode == 1
        err = result.stderr.decode()
        assert err.startswith("warpd reload: reload failed, keeping the current configuration")
        assert "max_sesions" in err
        assert daemon.run("status", "--connect", address).returncode == 0


def test_warpd_reload_names_the_default_config_file_or_says_there_is_none(
    short_tmp: Path,
) -> None:
    default = short_tmp / "config" / "warpd" / "config.toml"  # clean_env's XDG_CONFIG_HOME
    address = f"unix:{short_tmp}/w.sock"
    with serve(short_tmp) as daemon:
        said = daemon.run("reload", "--connect", address).stdout.decode().strip()
        assert said.endswith(f"reloaded the configuration from the defaults (there is no "
                             f"{default})"), said
        # The user copies config.toml there, as the README says, and reloads.
        default.parent.mkdir(parents=True)
        default.write_text("[limits]\nmax_sessions = 20\n")
        said = daemon.run("reload", "--connect", address).stdout.decode().strip()
        assert said.endswith(f"reloaded the configuration from {default}"), said


def test_already_serving_names_the_pid(short_tmp: Path) -> None:
    with serve(short_tmp) as first:
        second = subprocess.run(
            warpd_command("serve", "--listen", f"unix:{short_tmp}/w.sock"),
            capture_output=True, env=clean_env(short_tmp), timeout=4 * TIMEOUT_UNIT,
        )
        assert second.returncode == 1
        err = second.stderr.decode()
        assert f"another warpd (pid {first.process.pid}) is already serving at" in err, err
        assert "Traceback" not in err
        # Only that: not first a complaint that the history file (the first
        # daemon's) is in use, with advice to move it aside.
        assert err.count("\n") == 1 and "history" not in err, err
        # The first one's files are still its own.
        assert pid_file(short_tmp / "w.sock").read_text().strip() == str(first.process.pid)


def test_listen_with_an_http_or_tcp_url_names_the_websocket_form(short_tmp: Path) -> None:
    for given, wanted in (("http://127.0.0.1:8765", "ws://127.0.0.1:8765"),
                          ("tcp://localhost:9000", "ws://localhost:9000"),
                          ("127.0.0.1:8765", "ws://127.0.0.1:8765")):
        result = subprocess.run(warpd_command("serve", "--listen", given), capture_output=True,
                                env=clean_env(short_tmp), timeout=4 * TIMEOUT_UNIT)
        # A usage error: the command's usage, then one line naming the form to use.
        assert result.returncode == 2
        err = result.stderr.decode()
        assert err.startswith("usage: warpd serve") and "Traceback" not in err, err
        assert wanted in err.strip().splitlines()[-1]


# -- warpd subscribe before warpd serve -----------------------------------------------


def test_subscribe_started_before_serve_gets_the_stream(short_tmp: Path) -> None:
    address = f"unix:{short_tmp}/w.sock"
    env = clean_env(short_tmp, WARPD_ADDR=address)
    out, err = short_tmp / "sub.jsonl", short_tmp / "sub.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        subscriber = subprocess.Popen(warpd_command("subscribe", "--once"), stdout=stdout,
                                      stderr=stderr, env=env)
    try:
        wait_for(lambda: "waiting for one" in err.read_text(), "the subscriber to say it waits")
        time.sleep(0.5)
        assert subscriber.poll() is None
        with serve(short_tmp) as daemon:
            wait_for(lambda: "waiting for streams on 'default'" in err.read_text(),
                     "the subscriber to connect")
            assert daemon.run("push", "--connect", address, data=TEXT_WITH_USAGE).returncode == 0
            assert subscriber.wait(timeout=4 * TIMEOUT_UNIT) == 0
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    said = err.read_text().splitlines()
    # Said once each, with the address.
    assert said[0] == (f"warpd subscribe: no daemon at {address} yet; waiting for one "
                       "(start it with `warpd serve`; --no-wait to fail instead)")
    assert said[1:] == [f"warpd subscribe: connected to {address}",
                        "warpd subscribe: waiting for streams on 'default'"]
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    assert messages[0]["type"] == "hello"
    assert messages[-1]["blocks"][0]["text"] == "Hello wörld ✓"
    assert all(isinstance(m["received"], float) for m in messages)


def test_subscribe_no_wait_fails_at_once(short_tmp: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        warpd_command("subscribe", "--no-wait", "--connect", f"unix:{short_tmp}/none.sock"),
        capture_output=True, env=clean_env(short_tmp), timeout=4 * TIMEOUT_UNIT,
    )
    assert result.returncode == 3
    assert time.monotonic() - started < TIMEOUT_UNIT
    assert "warpd serve" in result.stderr.decode()


def test_pretty_subscribe_shows_a_waiting_line_until_the_first_stream(daemon: Daemon) -> None:
    sub = PtyProcess(warpd_command("subscribe", "--once", "--session", "tour"), daemon.env, 60, 10)
    try:
        wait_for(lambda: b"waiting for streams on 'tour'" in sub.output, "the waiting line")
        term = Terminal(60, 10)
        term.feed(sub.output)
        assert term.lines() == ["waiting for streams on 'tour'"]
        assert daemon.push(data=TEXT_WITH_USAGE, session="tour").returncode == 0
        assert sub.wait() == 0
    finally:
        sub.close()
    term = Terminal(60, 10)
    term.feed(sub.output)
    lines = term.lines()
    assert lines[0].startswith("── tour/1") and "Hello wörld ✓" in lines
    assert not any("waiting" in line for line in lines)


# -- warpd service install without a systemd user manager ---------------------------


def test_service_install_says_when_there_is_no_user_manager(short_tmp: Path) -> None:
    env = clean_env(short_tmp)
    runtime = Path(env["XDG_RUNTIME_DIR"])

    def install() -> str:
        result = subprocess.run(warpd_command("service", "install"), capture_output=True,
                                env=env, text=True, timeout=4 * TIMEOUT_UNIT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = install()
    assert "systemctl --user daemon-reload" in out
    assert "no systemd user manager is running" in out
    assert "loginctl enable-linger $USER" in out and "warpd serve" in out
    # With the manager's private socket there, nothing to warn about.
    (runtime / "systemd").mkdir()
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        manager.bind(str(runtime / "systemd" / "private"))
        assert "no systemd user manager" not in install()
    finally:
        manager.close()
    os.unlink(runtime / "systemd" / "private")
