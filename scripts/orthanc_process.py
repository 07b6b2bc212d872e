"""Start, stop and talk to a real Orthanc node on loopback ports (tests, benchmark).

Uses ``requests`` against Orthanc's HTTP API and dcmtk's ``storescu`` to send DICOM the way a
modality does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scripts.node import ORTHANC, node_config, write_config

T = TypeVar("T")
USER, PASSWORD = "orthanc", "orthanc"


def http_session(user: str, password: str) -> requests.Session:
    """A session for Orthanc's REST API that retries a request whose kept-alive connection died.

    Orthanc closes idle keep-alive connections after 1 s, so a reused one can be gone when the
    request is sent. Every call the tests and tools make is idempotent, POSTs included (storing
    the same instance, queueing a re-run, promoting a file), so retrying is safe. (Sending
    "Connection: close" instead made Orthanc 1.10's HTTP server stop answering after a restart.)
    """
    session = requests.Session()
    session.auth = (user, password)
    retry = Retry(total=3, connect=3, read=3, status=0, allowed_methods=None, backoff_factor=0.1)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], T], timeout: float, message: str, interval: float = 0.25) -> T:
    """Call ``check`` until it returns without AssertionError (or a connection error)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, requests.ConnectionError) as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s: {message} ({error})") from error
            time.sleep(interval)


class OrthancNode:
    """One Orthanc process with our plugin, its own data folder and loopback ports."""

    def __init__(self, data_dir: Path, *, aet: str = "AI_TEST", overrides: dict | None = None,
                 ready_path: str = "/ai/status") -> None:
        self.data_dir = Path(data_dir)
        self.ready_path = ready_path  # "/system" for a node whose AI plugin is disabled
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.config = node_config(data_dir=self.data_dir, http_port=self.http_port,
                                  dicom_port=self.dicom_port, aet=aet, overrides=overrides)
        self.config_path = write_config(self.data_dir, self.config)
        self.log_path = self.data_dir / "orthanc.log"
        self.process: subprocess.Popen | None = None
        self.session = http_session(USER, PASSWORD)
        self.url = f"http://127.0.0.1:{self.http_port}"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> OrthancNode:
        """Start Orthanc and wait until its REST API and our plugin answer."""
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([ORTHANC, "--verbose", str(self.config_path)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def ready() -> None:
            assert self.process is not None and self.process.poll() is None, \
                f"Orthanc exited with {self.process.returncode if self.process else None}; see {self.log_path}"
            assert self.session.get(f"{self.url}{self.ready_path}", timeout=5).status_code == 200

        wait_for(ready, timeout, f"Orthanc on port {self.http_port} with the AI plugin")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop Orthanc cleanly (SIGTERM), killing it if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the crash the exactly-once invariant must survive."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    @property
    def pid(self) -> int:
        """Process id of the running Orthanc."""
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        """Orthanc's log so far (our plugin logs into it)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- REST ---------------------------------------------------------------------------------
    def get(self, path: str, **kwargs) -> requests.Response:
        """GET with the test credentials."""
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def json(self, path: str) -> object:
        """GET, check 200, parse JSON."""
        response = self.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def post(self, path: str, data: bytes | str | None = None, **kwargs) -> requests.Response:
        """POST with the test credentials."""
        return self.session.post(self.url + path, data=data, timeout=60, **kwargs)

    def upload(self, data: bytes) -> dict:
        """Store one DICOM file over REST; returns Orthanc's answer."""
        response = self.post("/instances", data)
        assert response.status_code == 200, response.text
        return response.json()

    # -- DICOM --------------------------------------------------------------------------------
    def storescu(self, files: Iterable[Path], *, calling_aet: str = "MODALITY",
                 extra: Iterable[str] = ()) -> subprocess.CompletedProcess:
        """Send files with dcmtk's storescu, as a modality would."""
        command = ["storescu", "-aet", calling_aet, "-aec", self.aet, *extra, "127.0.0.1",
                   str(self.dicom_port), *map(str, files)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def cstore(self, files: Iterable[Path], *, calling_aet: str = "MODALITY") -> list[int]:
        """Send files with pynetdicom, proposing each file's own (possibly compressed) syntax."""
        import pydicom
        from pynetdicom import AE

        datasets = [pydicom.dcmread(path) for path in files]
        ae = AE(ae_title=calling_aet)
        for ds in datasets:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        association = ae.associate("127.0.0.1", self.dicom_port, ae_title=self.aet)
        assert association.is_established, "C-STORE association rejected"
        try:
            return [int(association.send_c_store(ds).Status) for ds in datasets]
        finally:
            association.release()

    def study_id(self, study_instance_uid: str) -> str:
        """Orthanc's identifier of a study, looked up by its DICOM UID."""
        answer = self.post("/tools/lookup", study_instance_uid).json()
        ids = [a["ID"] for a in answer if a["Type"] == "Study"]
        assert ids, f"study {study_instance_uid} not in Orthanc"
        return ids[0]

    def ai_state(self, study_id: str) -> dict:
        """Our stored state of a study, over our REST route."""
        return self.json(f"/ai/studies/{study_id}")  # type: ignore[return-value]

    def wait_state(self, study_id: str, states: Iterable[str], timeout: float = 90.0) -> dict:
        """Wait until the study's AI state is one of ``states``; return it."""
        wanted = set(states)

        def check() -> dict:
            state = self.ai_state(study_id)
            assert state.get("state") in wanted, f"state {state.get('state')!r}, error {state.get('error')}"
            return state

        return wait_for(check, timeout, f"study {study_id} to reach {sorted(wanted)}", interval=0.5)

    def wait_results(self, study_id: str, count: int, timeout: float = 60.0) -> dict:
        """Wait until the study is done with ``count`` results (e.g. after a re-run); return its state."""

        def check() -> dict:
            state = self.ai_state(study_id)
            assert state["state"] == "done" and len(state["results"]) == count, state["state"]
            return state

        return wait_for(check, timeout, f"study {study_id} done with {count} result(s)", interval=0.5)
