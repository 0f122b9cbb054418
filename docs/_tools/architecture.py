"""Draw docs/architecture.png: the nursery tree of a running service. `python docs/_tools/architecture.py`."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

BOXES = {
    # name: (x, y, w, h, colour, label)
    "service": (
        3.0,
        8.6,
        6.0,
        0.9,
        "#cfe2f3",
        "Service nursery  —  trio.run(service.run) / nursery.start(service.run)",
    ),
    "listener": (
        0.2,
        6.6,
        2.6,
        1.2,
        "#d9ead3",
        "transport listener\none port: HTTP/1.1 mucp\n+ HTTP/2 gRPC (sniffed)",
    ),
    "conn": (
        0.2,
        4.6,
        2.6,
        1.2,
        "#d9ead3",
        "connection tasks\nunary: read-ahead + handler\nstream: reader / writer",
    ),
    "registrar": (
        3.1,
        6.6,
        2.0,
        1.2,
        "#fce5cd",
        "registrar\nregister (TTL 90 s)\nevery 30 s; deregister\nfirst on stop",
    ),
    "subs": (5.4, 6.6, 2.0, 1.2, "#ead1dc", "subscriber loops\nbroker: http | nats\n| memory"),
    "selector": (7.7, 6.6, 2.2, 1.2, "#fff2cc", "caching selector\nregistry watch task\nstale on failure"),
    "signals": (10.2, 6.6, 1.7, 1.2, "#eeeeee", "signals\nSIGINT/SIGTERM\n-> graceful stop"),
    "handlers": (0.2, 2.6, 2.6, 1.2, "#d9d2e9", "your handlers\ncancel scope = caller's\ndeadline (Timeout)"),
    "registry": (3.1, 4.6, 2.0, 1.2, "#fce5cd", "registry\nmdns (127.0.0.1) | etcd\n| memory"),
    "client": (7.7, 4.6, 2.2, 1.2, "#fff2cc", "client\ncall / stream / publish\nretries, pool, wrappers"),
    "streams": (
        7.7,
        2.6,
        2.2,
        1.2,
        "#fff2cc",
        "client streams\nasync with: reader +\nwriter tasks, bounded\nmemory channels",
    ),
}
EDGES = [
    ("service", "listener"),
    ("service", "registrar"),
    ("service", "subs"),
    ("service", "selector"),
    ("service", "signals"),
    ("listener", "conn"),
    ("conn", "handlers"),
    ("registrar", "registry"),
    ("selector", "registry"),
    ("selector", "client"),
    ("client", "streams"),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(12, 7.2))
    ax.set_xlim(0, 12.1)
    ax.set_ylim(2.3, 9.7)
    ax.axis("off")
    centre = {}
    for name, (x, y, w, h, colour, label) in BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.5)
        centre[name] = (x + w / 2, y, y + h)
    for a, b in EDGES:
        ax1, _, _ = centre[a]
        bx, _, btop = centre[b]
        ay = centre[a][1]
        ax.annotate(
            "",
            xy=(bx, btop + 0.05),
            xytext=(ax1, ay - 0.05),
            arrowprops={"arrowstyle": "->", "color": "#555555"},
        )
    ax.set_title("trimicro: every task lives in a nursery someone owns", fontsize=12)
    out = Path(__file__).resolve().parent.parent / "architecture.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
