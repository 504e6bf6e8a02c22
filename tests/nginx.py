"""Debian's nginx as a round-robin balancer in front of N Tornado processes, for the tests.

`Nginx` writes its own configuration under a temporary directory (pid file,
logs and temp paths there too) and runs ``nginx -c FILE -g 'daemon off;'`` in
the foreground on a free loopback port; it is stopped by its PID.  The
configuration is the one docs/scaling.md recommends: plain round robin (no
sticky sessions), HTTP/1.1 keep-alive to the upstreams, and
``X-Forwarded-For`` / ``X-Forwarded-Proto`` for Tornado's ``xheaders=True``.

`TornadoProcesses` starts N copies of ``python -m tests.multiprocess_app``,
each on its own port, and stops them by their PIDs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from tests.redis_server import free_port

CONFIG = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream tornado {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tornado;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait until ``url`` answers anything over HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Nginx:
    """One nginx in the foreground, balancing over ``upstream_ports``."""

    def __init__(self, upstream_ports: list[int]) -> None:
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="tornado-session-nginx-")
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in upstream_ports)
        self.config = os.path.join(self.directory, "nginx.conf")
        with open(self.config, "w", encoding="utf-8") as out:
            out.write(CONFIG.format(dir=self.directory, servers=servers, port=self.port))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert os.path.exists(binary), "nginx is not installed: run scripts/test.sh (setup_nginx)"
        self.process = subprocess.Popen(
            [binary, "-c", self.config, "-g", "daemon off;"], stdin=subprocess.DEVNULL
        )
        wait_http(self.url + "/ping")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            os.kill(process.pid, signal.SIGQUIT)  # graceful: lets open requests finish
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


class TornadoProcesses:
    """N processes of ``tests.multiprocess_app``, one port each, sharing one store."""

    def __init__(self, count: int, store: str, url: str, users: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.args = ["--store", store, "--url", url, "--users", str(users)]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for port in self.ports:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.multiprocess_app", "--port", str(port), *self.args],
                cwd=root, stdin=subprocess.DEVNULL,
            ))
        for port in self.ports:
            wait_http(f"http://127.0.0.1:{port}/ping")

    def stop(self) -> None:
        for process in self.processes:
            os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes = []
