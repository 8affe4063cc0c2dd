"""`make install`'s torch step: the CPU build from PyTorch's index on a machine without a GPU when that
index answers, else the default build with one line saying so; TORCH_BUILD=cuda takes the default.
pip is stood in for by a script that logs its command line, so nothing is installed."""
from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def install_torch(tmp_path: Path, **variables: str) -> tuple[str, list[str]]:
    log = tmp_path / "pip.log"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = pip ]; then echo "$@" >> {log}; exit 0; fi\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    args = [f"{k}={v}" for k, v in {"PY": str(fake), **variables}.items()]
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install-torch", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stdout.splitlines() if line.startswith("torch:")]
    return "\n".join(said), log.read_text().splitlines() if log.exists() else []


def test_without_the_cpu_index_the_default_build_with_one_line(tmp_path):
    said, pip = install_torch(tmp_path, TORCH_BUILD="cpu", TORCH_CPU_INDEX="http://127.0.0.1:9/whl/cpu")
    assert said == "torch: http://127.0.0.1:9/whl/cpu is not reachable, installing the default build (with CUDA libraries, about 3 GB more)"
    assert pip == ["-m pip install --quiet torch==2.14.1 torchvision==0.29.1"]


def test_with_the_cpu_index_the_cpu_build(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        said, pip = install_torch(tmp_path, TORCH_BUILD="cpu", TORCH_CPU_INDEX=index)
    finally:
        server.shutdown()
    assert said == f"torch: the CPU build from {index}"
    assert pip == [f"-m pip install --quiet --extra-index-url {index} torch==2.14.1 torchvision==0.29.1"]


def test_the_cuda_build_on_request(tmp_path):
    said, pip = install_torch(tmp_path, TORCH_BUILD="cuda", TORCH="torch==2.14.1")
    assert said == "" and pip == ["-m pip install --quiet torch==2.14.1"]
