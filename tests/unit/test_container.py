"""
The container image, read (there is no Docker engine in CI): it runs as a
system user, checks its health through a key-less path, exposes what the
example config serves publicly, and its build context leaves secrets out.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import tomllib

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _instructions() -> list[tuple[str, str]]:
    """
    The Dockerfile's instructions, continuation lines joined.
    """
    joined = _read("Dockerfile").replace("\\\n", " ")
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


class DockerfileTests(SynchronousTestCase):
    def test_runs_as_a_system_user(self) -> None:
        instructions = _instructions()
        users = [rest for word, rest in instructions if word == "USER"]
        self.assertTrue(users, "no USER instruction")
        self.assertNotIn(users[-1].split(":")[0], ("root", "0"))
        last_user = max(i for i, (word, _) in enumerate(instructions) if word == "USER")
        self.assertFalse([rest for word, rest in instructions[last_user:] if word == "RUN"], "RUN after USER")
        runs = " ".join(rest for word, rest in instructions if word == "RUN")
        self.assertIn("useradd --system", runs)
        self.assertIn("install -d -m 0700 -o acme-appliance", runs)

    def test_health_check_uses_livez(self) -> None:
        [check] = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
        self.assertIn("CMD", check)
        env = " ".join(rest for word, rest in _instructions() if word == "ENV")
        self.assertIn("ACME_APPLIANCE_LIVEZ=http://127.0.0.1:8081/livez", env)

    def test_exposes_what_the_example_serves_publicly(self) -> None:
        exposed = set()
        for word, rest in _instructions():
            if word == "EXPOSE":
                exposed.update(shlex.split(rest))
        with open(os.path.join(ROOT, "etc", "production.example.toml"), "rb") as f:
            config = tomllib.load(f)
        self.assertIn("interface=127.0.0.1", config["admin"]["listen"])
        self.assertIn(":8081:", config["admin"]["listen"])
        self.assertNotIn("8081", exposed)
        self.assertLessEqual({"443", "80", "53/udp", "53/tcp"}, exposed)


class DockerignoreTests(SynchronousTestCase):
    def _ignored(self, path: str) -> bool:
        patterns = [p for p in _read(".dockerignore").splitlines() if p and not p.startswith("#")]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes) or any(
            fnmatch.fnmatch(path, pattern.removeprefix("**/"))
            or fnmatch.fnmatch(parts[-1], pattern.removeprefix("**/"))
            for pattern in patterns
            if pattern.startswith("**/")
        )

    def test_secrets_and_history_left_out(self) -> None:
        for path in (
            ".git/config",
            ".venv/bin/python",
            "etc/var/admin.key",
            "etc/var/state.db",
            "etc/var/ca/root.key",
            "_trial_temp/x",
            "build/lib/x.py",
            "acme_appliance.egg-info/PKG-INFO",
            "acme_appliance/__pycache__/x.pyc",
            ".mypy_cache/x",
            ".ruff_cache/x",
        ):
            self.assertTrue(self._ignored(path), path)

    def test_sources_kept(self) -> None:
        for path in ("pyproject.toml", "setup.cfg", "acme_appliance/tap.py", "twisted/plugins/acme_appliance.py"):
            self.assertFalse(self._ignored(path), path)
        self.assertFalse(self._ignored("etc/production.example.toml"))
        self.assertFalse(self._ignored("scripts/install-system-deps"))
