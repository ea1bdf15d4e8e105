"""Keys once checked only when the daemon starts (`sweep.interval`, `server.listen`) are
checked when the settings load, for every command: file, line and key, exit 2."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from retention.config.settings import load_settings
from retention.errors import ConfigError
from tests.helpers import cli, write_config


def _config(tmp_path: Path, extra: str) -> Path:
    """A retention.yaml whose lines from 8 on are `extra`."""
    return write_config(tmp_path, "https://fw.test/v1", extra=extra)


def _refused(tmp_path: Path, extra: str) -> str:
    """The one-line error the settings are refused with."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(tmp_path, extra))
    assert caught.value.exit_code == 2
    return caught.value.message


@pytest.mark.parametrize("interval", ["0", "0s", "PT0S", "0d"])
def test_a_zero_sweep_interval_is_refused_at_load(tmp_path: Path, interval: str) -> None:
    """`sweep.interval` of zero is refused naming file, line and key."""
    text = _refused(tmp_path, f"sweep:\n  interval: {interval}\n")
    assert text.startswith(f"{tmp_path / 'retention.yaml'}:9: sweep.interval: expected a duration")
    assert "above 0" in text


@pytest.mark.parametrize("interval", ["-1m", '"-60s"', "-P1D"])
def test_a_negative_sweep_interval_is_refused_at_load(tmp_path: Path, interval: str) -> None:
    """A negative `sweep.interval` is no duration: refused naming file, line and key."""
    text = _refused(tmp_path, f"sweep:\n  interval: {interval}\n")
    assert text.startswith(f"{tmp_path / 'retention.yaml'}:9: sweep.interval: invalid duration")


def test_a_positive_sweep_interval_and_the_default_load(tmp_path: Path) -> None:
    """One second is the shortest interval; without the key it is 60 seconds."""
    loaded = load_settings(_config(tmp_path, "sweep:\n  interval: 1s\n"))
    assert loaded.sweep.interval == timedelta(seconds=1)
    assert load_settings(_config(tmp_path, "")).sweep.interval == timedelta(seconds=60)


@pytest.mark.parametrize("listen", ["[::1]:8787", "127.0.0.1:0", ":8787", "0.0.0.0:65535"])
def test_listen_forms_the_daemon_takes_load(tmp_path: Path, listen: str) -> None:
    """Bracketed IPv6, port 0 (any free port) and an empty host load as given."""
    loaded = load_settings(_config(tmp_path, f'server:\n  listen: "{listen}"\n'))
    assert loaded.server.listen == listen


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("sweep:\n  interval: 0s\n", 9, "sweep.interval: expected a duration above 0"),
        ('server:\n  listen: "127.0.0.1:65536"\n', 9, "server.listen: the port must be"),
        ("server:\n  listen: localhost\n", 9, "server.listen: expected host:port"),
    ],
)
def test_a_command_refuses_them_with_exit_2(
    tmp_path: Path, extra: str, line: int, message: str
) -> None:
    """A command that only reads the settings exits 2 with `file:line: key: what is wrong`."""
    config = _config(tmp_path, extra)
    done = cli("-c", str(config), "policies", "check", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"retention: error: {config}:{line}: {message}"), done.stderr
