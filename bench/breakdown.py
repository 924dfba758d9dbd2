"""Where a rating's time goes: the latency histograms a stack's /metrics
exposes (Prometheus text on stdin), summarised per series as count, mean,
and the bucket bounds p50 and p99 fall in ("<= 25 ms": a histogram gives
no finer answer).

    curl -s URL/metrics | python3 bench/breakdown.py
"""

import re
import sys

# (family, a label that must appear, or "" for every series of it)
WANTED = [
    ("http_request_duration_seconds", 'route="/api/auth/rating",status="201"'),
    ("grpc_client_request_duration_seconds", 'grpc_method="RateMovie"'),
    ("grpc_server_request_duration_seconds", 'grpc_method="RateMovie"'),
    ("grpc_server_request_duration_seconds", 'grpc_method="Authenticate"'),
    ("catalog_stage_duration_seconds", ""),
    ("event_store_append_duration_seconds", 'store="catalog"'),
    ("event_store_group_commit_appends", 'store="catalog"'),
]

SAMPLE = re.compile(r"^(\w+?)(_bucket|_sum|_count)\{(.*)\} (\S+)$")


def series():
    found = {}
    for line in sys.stdin:
        m = SAMPLE.match(line.strip())
        if not m:
            continue
        name, part, labels, value = m.groups()
        le = None
        if part == "_bucket":
            le_match = re.search(r',?le="([^"]+)"', labels)
            le = le_match.group(1)
            labels = labels.replace(le_match.group(0), "")
        s = found.setdefault((name, labels), {"buckets": []})
        if le is not None:
            s["buckets"].append((float(le), float(value)))
        else:
            s[part] = float(value)
    return found


def quantile(buckets, count, q):
    for bound, cumulative in sorted(buckets):
        if cumulative >= q * count:
            return bound
    return float("inf")


def main():
    found = series()
    print(f"{'series':<78} {'count':>9} {'mean':>9} {'p50 <=':>8} {'p99 <=':>8}")
    for family, label in WANTED:
        for (name, labels), s in sorted(found.items()):
            if name != family or label not in labels or not s.get("_count"):
                continue
            count = s["_count"]
            seconds = name.endswith("_seconds")
            scale, unit = (1e3, "ms") if seconds else (1, "")
            mean = s["_sum"] / count * scale
            p50 = quantile(s["buckets"], count, 0.5) * scale
            p99 = quantile(s["buckets"], count, 0.99) * scale
            short = re.sub(r'grpc_service="[^"]*",?', "", labels)
            print(f"{name + '{' + short + '}':<78} {count:>9.0f} {mean:>7.2f}{unit:<2} {p50:>6g}{unit:<2} {p99:>6g}{unit:<2}")


main()
