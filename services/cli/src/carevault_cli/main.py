"""``carevault``: the operator's command.

``carevault run`` starts the whole platform locally on its embedded default
(SQLite, a local blob directory, in-process caches, a local CA).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from carevault_cli.mesh import Mesh, MeshLayout, migrate_all, prepare_state, seed_demo

DEFAULT_STATE_DIR = Path(".carevault")


def _layout(args: argparse.Namespace) -> MeshLayout:
    return MeshLayout(
        state_dir=Path(args.state_dir).resolve(),
        port_offset=args.port_offset,
        database_url_template=args.database_url_template,
        redis_url=args.redis_url,
    )


def cmd_init(args: argparse.Namespace) -> int:
    layout = _layout(args)
    prepare_state(layout)
    print(f"state ready in {layout.state_dir}; clients trust {layout.state_dir / 'ca.pem'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    layout = _layout(args)
    prepare_state(layout)
    migrate_all(layout)
    print(seed_demo(layout), end="", flush=True)
    mesh = Mesh(layout)
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        mesh.start()
        mesh.wait_ready(timeout=90)
        print(f"carevault is running: {layout.gateway_url}  (trust {layout.state_dir / 'ca.pem'}; logs in {layout.state_dir / 'logs'})")
        print("Ctrl-C stops every service.", flush=True)
        while not stopping:
            for service, proc in mesh.processes.items():
                if proc.poll() is not None:
                    print(f"{service} exited with code {proc.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.3)
    except (RuntimeError, TimeoutError) as exc:
        print(f"carevault: {exc}", file=sys.stderr)
        mesh.stop()
        return 1
    codes = mesh.stop()
    print("stopped: " + ", ".join(f"{s}={c}" for s, c in codes.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carevault", description="Run and operate carevault.")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="local state (CA, certificates, databases, blobs, logs)")
    parser.add_argument("--port-offset", type=int, default=0, help="add this to every local port")
    parser.add_argument(
        "--database-url-template", default="", help="e.g. postgresql+asyncpg://127.0.0.1:5432/carevault_{service}; SQLite when empty"
    )
    parser.add_argument("--redis-url", default="", help="shared rate limits and replay caches; in-process when empty")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the local CA, certificates and state folders").set_defaults(func=cmd_init)
    sub.add_parser("run", help="start all five services on loopback until Ctrl-C").set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
