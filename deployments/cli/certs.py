"""`nova certs create`: the CA and node certificates for TLS between Nova's parts.

nova certs create [--dir DIR] [--node NAME=ADDR[,ADDR...] ...] [--force] [--days N]

Without `--node`, one node named `local` for 127.0.0.1 and localhost: what the embedded
stack uses with `NOVA_TLS=true`. On a cluster, name every node with the addresses its
peers reach it at (Ray's node IP first of all), then copy `ca.crt` and the node's
`.crt`/`.key` (or `.pem`) to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deployments.stack import dev_layout
from deployments.stack.certs import (
    LOCAL_ADDRESSES,
    LOCAL_NODE,
    NODE_DAYS,
    TlsDir,
    create,
    parse_node,
    stack_tls_dir,
)


def add_commands(sub: Any) -> None:
    certs = sub.add_parser("certs", help="certificates for TLS between Nova's parts")
    commands = certs.add_subparsers(dest="certs_command", required=True)
    p = commands.add_parser(
        "create",
        help="a private CA (kept) and a certificate per node",
        description="Make a private CA unless the directory has one (--force makes a new "
        "one), then a certificate and key for each node, naming its addresses, good for "
        "both server and client authentication. Keys are 0600.",
    )
    p.add_argument("--dir", type=Path, help="default: <state dir>/secrets/tls")
    p.add_argument(
        "--node",
        dest="nodes",
        action="append",
        type=_node,
        metavar="NAME=ADDR[,ADDR...]",
        help=f"a node and its IP addresses or DNS names (repeatable; default: "
        f"{LOCAL_NODE}={','.join(LOCAL_ADDRESSES)})",
    )
    p.add_argument("--force", action="store_true", help="replace the CA (nodes must be reissued)")
    p.add_argument(
        "--days",
        type=_days,
        default=NODE_DAYS,
        help=f"node certificates' life (default {NODE_DAYS})",
    )
    p.set_defaults(func=cmd_certs_create)


def cmd_certs_create(args: argparse.Namespace) -> int:
    directory = TlsDir(args.dir) if args.dir else stack_tls_dir(dev_layout())
    nodes = dict(args.nodes or [(LOCAL_NODE, LOCAL_ADDRESSES)])
    issued = create(directory, nodes, force=args.force, node_days=args.days)
    state = "new" if issued.ca_created else "kept"
    print(f"CA {directory.ca_cert} ({state}; its key {directory.ca_key} stays on this machine)")
    for name, addresses in issued.nodes.items():
        files = directory.node(name)
        print(f"node {name} ({', '.join(addresses)}): {files.cert}, {files.key}, {files.bundle}")
    return 0


def _node(text: str) -> tuple[str, tuple[str, ...]]:
    try:
        return parse_node(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3650:
        raise argparse.ArgumentTypeError(f"{text}: expected whole days, 1 to 3650")
    return int(text)
