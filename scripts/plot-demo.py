#!/usr/bin/env python3
"""Plots a demo run from Prometheus' HTTP API: requests/s, success rate and p99 latency per
service (each service's sidecars, inbound), with the operator's changes marked.

    scripts/plot-demo.py --prometheus http://127.0.0.1:9090 --start UNIX --end UNIX \
        --event UNIX "label" ... --out docs/img/

Writes rps.png, success.png and p99.png. Needs python3-matplotlib (Debian) and nothing else.
"""
import argparse
import json
import os
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WINDOW = "30s"
QUERIES = {
    "rps": ("Requests per second (inbound, per service)", "requests/s",
            f'sum by (service) (rate(sidecar_requests_total{{direction="inbound"}}[{WINDOW}]))'),
    "success": ("Success rate (answers that are not 5xx)", "success rate (%)",
                f'100 * (1 - (sum by (service) (rate(sidecar_requests_total{{direction="inbound",code=~"5.."}}[{WINDOW}])) or sum by (service) (rate(sidecar_requests_total{{direction="inbound"}}[{WINDOW}])) * 0)'
                f' / sum by (service) (rate(sidecar_requests_total{{direction="inbound"}}[{WINDOW}])))'),
    "p99": ("Latency p99 (inbound, per service)", "p99 (ms)",
            f'1000 * histogram_quantile(0.99, sum by (service, le) (rate(sidecar_request_duration_seconds_bucket{{direction="inbound"}}[{WINDOW}])))'),
    "payments-versions": ("payments: requests per second by version (canary)", "requests/s",
                          f'sum by (version) (rate(sidecar_requests_total{{direction="inbound",service="payments"}}[{WINDOW}]))'),
}


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr}: {body}")
    return body["data"]["result"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--step", default="5")
    parser.add_argument("--event", nargs=2, action="append", default=[], metavar=("UNIX", "LABEL"))
    parser.add_argument("--out", default="docs/img")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, (title, ylabel, expr) in QUERIES.items():
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
        for series in query_range(args.prometheus, expr, args.start, args.end, args.step):
            label = series["metric"].get("service") or series["metric"].get("version") or "?"
            points = [(float(t) - args.start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1.8)
        for when, label in args.event:
            x = float(when) - args.start
            ax.axvline(x, color="grey", linestyle="--", linewidth=1)
            ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color="dimgrey")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("seconds into the demo")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8, ncol=4)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, f"{name}.png"))
        plt.close(fig)
        print(f"wrote {os.path.join(args.out, name + '.png')}")


if __name__ == "__main__":
    main()
