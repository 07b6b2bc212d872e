"""Benchmark: start a node, send N synthetic thyroid studies, print where the time goes.

    .venv/bin/python scripts/bench.py --studies 20 --matrix 128

Prints per study the processing split (read, decode, inference, post-processing, writing,
storing), the median and p95 from "study stable" to "results stored", throughput, and the
plugin's (Orthanc process') peak resident memory. A benchmark prints figures; it never fails on
a slow machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.orthanc_process import OrthancNode  # noqa: E402
from tests.integration.studies import thyroid_nm  # noqa: E402

PHASES = ("read", "decode", "inference", "postprocess", "write", "store")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--matrix", type=int, default=128, choices=[128, 256])
    parser.add_argument("--spacing", type=float, default=0.0,
                        help="seconds between sends (0: all in one association, measures queueing too)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ai-bench-") as tmp:
        folder = Path(tmp)
        (folder / "send").mkdir()
        studies = [thyroid_nm(folder / "send", f"bench-{i}", seed=900_000 + i, matrix=args.matrix)
                   for i in range(args.studies)]
        node = OrthancNode(folder / "node", overrides={"StableAge": 1, "AiNode": {"PollSeconds": 0.5}}).start()
        try:
            started = time.time()
            for path, _ in studies:
                assert node.storescu([path]).returncode == 0
                time.sleep(args.spacing)
            states = [node.wait_state(node.study_id(uid), ["done", "failed"], timeout=600) for _, uid in studies]
            elapsed = time.time() - started
            peak = _peak_rss_mib(node.pid)
        finally:
            node.stop()
    print(f"{'study':>8} " + " ".join(f"{p:>11}" for p in PHASES) + f" {'total ms':>9} {'stable->stored':>15}")
    totals, latencies = [], []
    for i, state in enumerate(states):
        if state["state"] != "done":
            print(f"{i:>8} failed: {state.get('error')}")
            continue
        result = state["results"][0]
        totals.append(result["total_ms"])
        latency = state.get("stable_to_stored_ms")  # absent when the worker saw it stable first
        if latency is not None:
            latencies.append(latency)
        print(f"{i:>8} " + " ".join(f"{result['timings_ms'].get(p, 0.0):>11.1f}" for p in PHASES)
              + f" {result['total_ms']:>9.1f} {'-' if latency is None else f'{latency:.1f}':>15}")
    print(f"\nstudies: {len(totals)}/{len(states)} done, matrix {args.matrix}")
    print(f"processing per study: median {statistics.median(totals):.0f} ms, p95 {_percentile(totals, 0.95):.0f} ms")
    print(f"stable -> stored: median {statistics.median(latencies):.0f} ms, p95 {_percentile(latencies, 0.95):.0f} ms"
          f" ({len(latencies)} studies with a STABLE_STUDY time stamp)")
    print(f"throughput: {len(totals) / elapsed:.2f} studies/s (send to last result, {elapsed:.1f} s, "
          f"includes StableAge 1 s)")
    print(f"Orthanc + plugin peak resident memory: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
