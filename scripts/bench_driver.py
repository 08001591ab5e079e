#!/usr/bin/env python3
"""Measures every figure of issue #12 on several running servers in one run (driven by scripts/bench).

Each server is NAME=PORT=PID[,PID...]; the same client code (curl for bulk bytes, http.client for
requests, the way the shared Glance harness measures) runs against each in turn, RUNS times, and the
median is kept. Writes a JSON summary and prints a Markdown table of ratios (first server vs the one
named by --baseline). Not a test: no figure here ever fails a build.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLK = os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, spec):
        name, port, pids = spec.split("=")
        self.name, self.port = name, int(port)
        self.pids = [int(p) for p in pids.split(",") if p]
        self.base = f"http://127.0.0.1:{self.port}"

    def all_pids(self):
        # uWSGI workers are children of the master: count them too.
        pids = list(self.pids)
        for p in self.pids:
            try:
                out = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
                pids += [int(x) for x in out.split()]
            except OSError:
                pass
        return pids

    def cpu_seconds(self):
        total = 0
        for p in self.all_pids():
            try:
                fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total / CLK

    def reset_peak(self):
        for p in self.all_pids():
            try:
                open(f"/proc/{p}/clear_refs", "w").write("5")
            except OSError:
                pass

    def peak_mib(self):
        """Largest VmHWM of the server's processes, and their sum (MiB)."""
        values = []
        for p in self.all_pids():
            try:
                for line in open(f"/proc/{p}/status"):
                    if line.startswith("VmHWM:"):
                        values.append(int(line.split()[1]) / 1024)
            except OSError:
                pass
        return (max(values) if values else 0, sum(values))

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request(method, path, body, headers or {})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def create(self, name="bench"):
        body = json.dumps({"name": name, "disk_format": "raw", "container_format": "bare"})
        status, data = self.request("POST", "/v2/images", body, {"Content-Type": "application/json"})
        assert status == 201, (status, data[:200])
        return json.loads(data)["id"]

    def status(self, image_id):
        return json.loads(self.request("GET", f"/v2/images/{image_id}")[1])["status"]

    def delete(self, image_id):
        self.request("DELETE", f"/v2/images/{image_id}")


def curl(args):
    out = subprocess.run(["curl", "-sS"] + args, capture_output=True, text=True)
    return out.stdout.split()


def upload(server, path, image_id):
    code, seconds, size = curl([
        "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_upload}", "-X", "PUT",
        "-H", "Content-Type: application/octet-stream", "-H", "Expect:", "-T", path,
        f"{server.base}/v2/images/{image_id}/file"])
    return int(code), float(seconds), int(size)


def download(server, image_id, byte_range=None):
    extra = ["-H", f"Range: bytes={byte_range[0]}-{byte_range[1] - 1}"] if byte_range else []
    code, seconds, size = curl(["-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}"] + extra +
                               [f"{server.base}/v2/images/{image_id}/file"])
    return int(code), float(seconds), int(size)


def median(values):
    return round(statistics.median(values), 3) if values else None


def measure_transfer(server, big, runs):
    """1 GiB upload and download: MB/s, server CPU s, peak RSS; then Range and 8 concurrent downloads."""
    up, up_cpu, up_rss, down, down_cpu, down_rss = [], [], [], [], [], []
    kept = None
    for _ in range(runs):
        image_id = server.create("bench-up")
        server.reset_peak()
        c0 = server.cpu_seconds()
        code, seconds, size = upload(server, big, image_id)
        up_cpu.append(server.cpu_seconds() - c0)
        up_rss.append(server.peak_mib()[0])
        assert code in (201, 204) and server.status(image_id) == "active", (server.name, code)
        up.append(size / 1e6 / seconds)
        server.reset_peak()
        c0 = server.cpu_seconds()
        code, seconds, size = download(server, image_id)
        down_cpu.append(server.cpu_seconds() - c0)
        down_rss.append(server.peak_mib()[0])
        assert code == 200 and size == os.path.getsize(big), (server.name, code, size)
        down.append(size / 1e6 / seconds)
        if kept:
            server.delete(image_id)
        else:
            kept = image_id
    result = {
        "upload_1g_mbps": median(up), "upload_1g_cpu_s": median(up_cpu), "upload_1g_peak_rss_mib": median(up_rss),
        "download_1g_mbps": median(down), "download_1g_cpu_s": median(down_cpu),
        "download_1g_peak_rss_mib": median(down_rss),
    }
    # Range requests: 16 × 64 MiB slices of the same image, sequential.
    size = os.path.getsize(big)
    rates = []
    for _ in range(runs):
        total, elapsed = 0, 0.0
        for i in range(16):
            start = i * (size // 16)
            code, seconds, got = download(server, kept, (start, start + size // 16))
            if code != 206 or got != size // 16:
                print(f"{server.name}: Range answered {code} with {got} bytes", file=sys.stderr)
                break
            total += got
            elapsed += seconds
        else:
            rates.append(total / 1e6 / elapsed)
    result["range_64m_mbps"] = median(rates)
    # 8 concurrent downloads of the 1 GiB image: aggregate MB/s.
    rates = []
    for _ in range(runs):
        results = [None] * 8

        def one(i):
            results[i] = download(server, kept)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        assert all(r[0] == 200 and r[2] == size for r in results), (server.name, results)
        rates.append(8 * size / 1e6 / wall)
    result["download_8x1g_mbps"] = median(rates)
    server.delete(kept)
    return result


def measure_mixed(server, big, small):
    """8 concurrent 128 MiB uploads while 8 downloads of a 1 GiB image run: peak RSS, outcomes."""
    source = server.create("bench-mixed-src")
    upload(server, big, source)
    targets = [server.create(f"bench-mixed-{i}") for i in range(8)]
    codes = {}
    lock = threading.Lock()

    def up(i):
        code = upload(server, small, targets[i])[0]
        with lock:
            codes[f"upload {code}"] = codes.get(f"upload {code}", 0) + 1

    def down():
        code = download(server, source)[0]
        with lock:
            codes[f"download {code}"] = codes.get(f"download {code}", 0) + 1

    server.reset_peak()
    threads = [threading.Thread(target=up, args=(i,)) for i in range(8)] + [threading.Thread(target=down) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    largest, total = server.peak_mib()
    active = sum(1 for t in targets if server.status(t) == "active")
    for t in targets + [source]:
        server.delete(t)
    return {"mixed_8up_8down_peak_rss_mib": round(largest, 1), "mixed_8up_8down_peak_rss_sum_mib": round(total, 1),
            "mixed_8up_8down_codes": codes, "mixed_8up_active": active}


def measure_requests(server, runs, count):
    body = json.dumps({"name": "bench-create", "disk_format": "raw", "container_format": "bare"})
    headers = {"Content-Type": "application/json"}
    fresh, keep, health = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(count):
            assert server.request("POST", "/v2/images", body, headers)[0] == 201
        fresh.append(count / (time.perf_counter() - t0))
        # Keep-alive (Glance under uWSGI closes every connection: then this is a new one each time).
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        t0 = time.perf_counter()
        for _ in range(count):
            try:
                status, _ = server.request("POST", "/v2/images", body, headers, conn=conn)
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                status, _ = server.request("POST", "/v2/images", body, headers, conn=conn)
            assert status == 201
        keep.append(count / (time.perf_counter() - t0))
        conn.close()
    latencies = []
    for _ in range(1000):
        t0 = time.perf_counter()
        server.request("GET", "/healthcheck")
        latencies.append((time.perf_counter() - t0) * 1000)
    latencies.sort()
    # Clean up what the loops created.
    listing = json.loads(server.request("GET", "/v2/images?limit=1000&name=bench-create")[1])
    while listing.get("images"):
        for image in listing["images"]:
            server.delete(image["id"])
        listing = json.loads(server.request("GET", "/v2/images?limit=1000&name=bench-create")[1])
    return {"create_newconn_rps": median(fresh), "create_keepalive_rps": median(keep),
            "healthcheck_p50_ms": round(latencies[500], 3), "healthcheck_p99_ms": round(latencies[990], 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", action="append", required=True, help="NAME=PORT=PID[,PID]")
    parser.add_argument("--upload-only", action="append", default=[], help="servers measured for upload only")
    parser.add_argument("--baseline", default="glance")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", default=tempfile.gettempdir())
    parser.add_argument("--hash-speed", action="append", default=[], help="JSON lines of imagestore hash-speed")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    big = os.path.join(args.data, "bench-1g.bin")
    small = os.path.join(args.data, "bench-128m.bin")
    for path, mib in ((big, 1024), (small, 128)):
        if not os.path.exists(path) or os.path.getsize(path) != mib << 20:
            with open(path, "wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(1 << 20))

    summary = {"date": time.strftime("%Y-%m-%d %H:%M"), "runs": args.runs, "loadavg_start": os.getloadavg()[0],
               "servers": {}, "hash_only": [json.loads(line) for line in args.hash_speed]}
    for spec in args.server:
        server = Server(spec)
        print(f"== {server.name}", flush=True)
        figures = {}
        if server.name in args.upload_only:
            up, cpu = [], []
            for _ in range(args.runs):
                image_id = server.create("bench-up")
                c0 = server.cpu_seconds()
                code, seconds, size = upload(server, big, image_id)
                cpu.append(server.cpu_seconds() - c0)
                up.append(size / 1e6 / seconds)
                server.delete(image_id)
            figures = {"upload_1g_mbps": median(up), "upload_1g_cpu_s": median(cpu)}
        else:
            figures.update(measure_transfer(server, big, args.runs))
            figures.update(measure_mixed(server, big, small))
            figures.update(measure_requests(server, args.runs, args.requests))
        print(json.dumps(figures), flush=True)
        summary["servers"][server.name] = figures
    summary["loadavg_end"] = os.getloadavg()[0]
    with open(args.summary, "w") as f:
        json.dump(summary, f, indent=2)

    # The table docs/performance.md is built from: each figure beside the baseline's, with the ratio.
    names = list(summary["servers"])
    base = summary["servers"].get(args.baseline, {})
    print("\n| measure | " + " | ".join(names) + f" | ratio (first / {args.baseline}) |")
    print("|---|" + "---|" * (len(names) + 1))
    keys = []
    for figures in summary["servers"].values():
        keys += [k for k in figures if k not in keys and not isinstance(figures[k], dict)]
    for key in keys:
        cells = [str(summary["servers"][n].get(key, "")) for n in names]
        first, other = summary["servers"][names[0]].get(key), base.get(key)
        ratio = f"{first / other:.2f}×" if isinstance(first, (int, float)) and isinstance(other, (int, float)) and other else ""
        print(f"| {key} | " + " | ".join(cells) + f" | {ratio} |")
    for h in summary["hash_only"]:
        print(f"| hash only {h['algorithm']} (memory, 1 GiB), CPU s | {h['cpuSeconds']:.2f} | wall {h['wallSeconds']:.2f} s |")
    print(f"\nsummary: {args.summary}")


if __name__ == "__main__":
    main()
