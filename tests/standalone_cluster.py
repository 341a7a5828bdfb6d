"""A real Spark standalone cluster on 127.0.0.1 (one master, N workers) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SPARK_CLASS = Path(sys.executable).parent / "spark-class"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(log: Path, text: str, count: int, timeout_s: float, proc) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[1]} exited:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)
    raise TimeoutError(f"waited {timeout_s} s for {text!r} in {log}")


class StandaloneCluster:
    """Start with ``with StandaloneCluster(workdir, n_workers=2) as url:``; stopped on exit."""

    def __init__(self, workdir: Path, n_workers: int = 2, cores: int = 1, memory: str = "2g"):
        self.workdir = Path(workdir)
        self.n_workers = n_workers
        self.cores = cores
        self.memory = memory
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(self.workdir)}
        proc = subprocess.Popen(
            [str(SPARK_CLASS), *args],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc, log

    def __enter__(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        url = f"spark://127.0.0.1:{port}"
        master, master_log = self._start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port()),
            ],
        )  # fmt: skip
        try:
            _wait_for(master_log, "I have been elected leader", 1, 120, master)
            for k in range(self.n_workers):
                self._start(
                    f"worker{k}",
                    [
                        "org.apache.spark.deploy.worker.Worker", url,
                        "--host", "127.0.0.1", "--cores", str(self.cores),
                        "--memory", self.memory, "--webui-port", str(free_port()),
                        "--work-dir", str(self.workdir / f"work{k}"),
                    ],
                )  # fmt: skip
            _wait_for(master_log, "Registering worker", self.n_workers, 120, master)
        except BaseException:
            self.stop()
            raise
        return url

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
