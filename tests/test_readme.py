"""The README's commands are the ones CI and users actually run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from github_app.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    return lines[start + 1].strip()


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    command = readme_command("# 2. install and run the tests")
    assert command.endswith("python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert command in ci_lines


def test_readme_run_command_serves_the_app() -> None:
    command = readme_command("# 1. install and run the app")
    assert command.endswith("python -m github_app serve")
    assert "pip install -e ." in command


def readme_block(first_line: str) -> str:
    """The fenced block of README whose first line is ``first_line``."""
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    start = lines.index(first_line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return "\n".join(lines[start:end])


def test_the_replicas_compose_example_runs_what_it_says_against_one_redis() -> None:
    compose = yaml.safe_load(readme_block("# compose.yaml"))
    services = compose["services"]
    redis = services["redis"]["command"].split()
    assert redis[0] == "redis-server"
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--appendfsync") + 1] == "everysec"
    assert "/data" in services["redis"]["volumes"][0]  # the AOF outlives the container
    apps = [name for name, service in services.items() if "build" in service]
    assert len(apps) >= 2
    dockerfile = readme_block("# Dockerfile").splitlines()
    cmd = json.loads(next(line for line in dockerfile if line.startswith("CMD")).split(" ", 1)[1])
    assert cmd[:4] == ["python", "-m", "github_app", "serve"]
    port = cmd[cmd.index("--port") + 1]
    for name in apps:
        env = services[name]["environment"]
        settings = load_settings(
            {
                **env,
                "REDIS_URL": env["REDIS_URL"].replace("${REDIS_PASSWORD}", "pw"),
                "PRIVATE_KEY_PATH": "",  # a secret file the test does not have
            },
            env_file=None,
        )
        assert settings.queue_backend == "redis"
        assert settings.redis_url is not None
        assert urlsplit(settings.redis_url.get_secret_value()).hostname in services
        assert set(env) <= {field.upper() for field in Settings.model_fields}
        assert env["PRIVATE_KEY_PATH"] == f"/run/secrets/{services[name]['secrets'][0]}"
    caddy = readme_block("# Caddyfile")
    route = next(line.split() for line in caddy.splitlines() if "reverse_proxy" in line)
    assert route[1] == Settings.model_fields["webhook_path"].default
    assert route[2:-1] == [f"{name}:{port}" for name in apps]  # every replica, any of them
    assert "health_uri /readyz" in caddy
