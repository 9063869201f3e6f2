"""Plots throughput against clients for our enqueue (one order per call, and client-batched),
etcd's put and RabbitMQ's confirmed publish, from the `compare` lines `queue-bench compare`
printed during a `scripts/bench` run (one JSON object per line).

Run by scripts/bench with the matplotlib of the virtual environment it keeps under target/:
    bench_plot.py COMPARE_JSONL OUTPUT_PNG TITLE
"""

import json
import sys

import matplotlib

# No display here: render straight to a file.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: bench_plot.py COMPARE_JSONL OUTPUT_PNG TITLE")
    source, output, title = sys.argv[1:]
    with open(source, encoding="utf-8") as lines:
        rows = sorted(
            (json.loads(line) for line in lines if line.strip()),
            key=lambda row: row["clients"],
        )
    if not rows:
        sys.exit(f"bench_plot.py: no comparison in {source}")
    clients = [row["clients"] for row in rows]

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.plot(
        clients,
        [row["ours_ops_per_sec"] for row in rows],
        marker="o",
        label="our queue: Enqueue, one order per call",
    )
    axes.plot(
        clients,
        [row["etcd_ops_per_sec"] for row in rows],
        marker="s",
        label="etcd: put",
    )
    axes.plot(
        clients,
        [row["rabbitmq_ops_per_sec"] for row in rows],
        marker="^",
        label="RabbitMQ quorum queue: publish + confirm",
    )
    # Reported beside, not compared: the client batches concurrent enqueues into one call.
    batched = [row.get("ours_batched_ops_per_sec") for row in rows]
    if all(rate is not None for rate in batched):
        axes.plot(
            clients,
            batched,
            marker="o",
            linestyle="--",
            color="grey",
            label="our queue: client-batched (EnqueueBatch)",
        )
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(FixedLocator(clients))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_ylim(bottom=0)
    axes.set_xlabel("concurrent clients (closed loop, log scale)")
    axes.set_ylabel("acknowledged writes per second")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(output)


if __name__ == "__main__":
    main()
