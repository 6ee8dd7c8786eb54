"""``carevault``: the operator's command.

``carevault run`` starts the whole platform locally on its embedded default
(SQLite, a local blob directory, in-process caches, a local CA).
``carevault audit verify|keygen`` checks the audit trail and makes its keys;
``carevault erasure replay`` re-applies the erasure journal after a restore.
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from carevault_cli.audit import cmd_verify

    layout = _layout(args)
    url = args.database_url or layout.database_url("api")
    public_keys = [Path(p) for p in args.public_key]
    local_key = layout.audit_dir / "checkpoint.pub"
    if not public_keys and not args.database_url and local_key.is_file():
        public_keys = [local_key]  # a local run's own key
    return cmd_verify(url, public_keys, [Path(p) for p in args.log_checkpoints], args.json)


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    from carevault_cli.audit import cmd_keygen

    return cmd_keygen(Path(args.out))


def cmd_erasure_replay(args: argparse.Namespace) -> int:
    from carevault_cli.erasure import cmd_replay

    key_file = Path(args.pseudonym_key_file) if args.pseudonym_key_file else None
    return cmd_replay(_layout(args), key_file, args.dry_run, Path(args.journal) if args.journal else None)


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

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser(
        "verify", help="check the hash chain and its signed checkpoints; name what was altered, deleted, inserted, reordered"
    )
    verify.add_argument("--database-url", default="", help="api's database (read-only use); the local one under --state-dir when empty")
    verify.add_argument(
        "--public-key", action="append", default=[], help="checkpoint public key file (checkpoint.pub); repeat for earlier keys"
    )
    verify.add_argument(
        "--log-checkpoints", nargs="*", default=[], help="api JSON log files: their 'audit checkpoint' lines are checked too"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.set_defaults(func=cmd_audit_verify)
    keygen = audit.add_parser("keygen", help="create the checkpoint key pair and the pseudonym key (for Secrets)")
    keygen.add_argument("--out", required=True, help="directory to write checkpoint.key, checkpoint.pub, pseudonym.key into")
    keygen.set_defaults(func=cmd_audit_keygen)

    erasure = sub.add_parser("erasure", help="the erasure journal").add_subparsers(dest="erasure_command", required=True)
    replay = erasure.add_parser("replay", help="after a restore: erase again every patient the erasure journal names")
    replay.add_argument("--pseudonym-key-file", default="", help="the audit pseudonym key; the local one under --state-dir when empty")
    replay.add_argument("--dry-run", action="store_true", help="count matches; erase nothing")
    replay.add_argument("--journal", default="", help="JSON lines {tenant, pseudonym} (e.g. from api's logs); api's database when empty")
    replay.set_defaults(func=cmd_erasure_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
