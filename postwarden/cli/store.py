"""``postwarden store``: prepare a store, move settings into and out of it, see its nodes.

Description:
    ``store init [URL]``       create or upgrade the schema of a PostgreSQL store (the file
                               store: its state database); idempotent
    ``store import FILE``      validate FILE and make it the store's settings (a new version,
                               recorded in the audit trail)
    ``store export [FILE]``    the settings as stored, to FILE (atomically) or stdout; a
                               file store can use it as its settings file
    ``store status``           the store, the settings version, each node's applied version
                               and lag, and this node's buffered state

    URL defaults to ``--store``. Moving a host to a fleet: ``store init URL``, then
    ``--store URL store import /etc/postwarden/settings.yaml``; and back: ``--store URL
    store export /etc/postwarden/settings.yaml``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from postwarden.admin import transfer
from postwarden.admin.session import Admin
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus
from postwarden.store import open_store


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    init = add("init", "create or upgrade the store's schema (idempotent)")
    init.add_argument("url", metavar="URL", nargs="?", help="the store (default: --store)")
    imported = add("import", "make a settings file the store's settings")
    imported.add_argument("file", metavar="FILE", help="a settings file (validated first)")
    _settings.add_dry_run(imported)
    exported = add("export", "write the store's settings to FILE (default: standard output)")
    exported.add_argument("file", metavar="FILE", nargs="?", help="where to write them")
    add("status", "the store, its settings version, the nodes and their lag")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "init":
        store = (
            open_store(args.url, settings_path=env.settings_path, state_dir=env.state_dir)
            if args.url
            else env.store()
        )
        done = store.initialize()
        env.emit({"store": store.location, "done": done}, "\n".join(done))
        return ExitStatus.OK
    admin = _settings.admin(env, args)
    if args.action == "import":
        loaded, change = transfer.import_file(admin, Path(args.file))
        data: dict[str, object] = {
            "store": admin.store.location,
            "file": args.file,
            "digest": loaded.digest,
        }
        if change is None:
            text = f"{args.file}: now the settings of {admin.store.location}"
            env.emit({**data, "changed": not admin.dry_run}, text)
            return ExitStatus.OK
        verb = "are" if change.changed else "were already"
        data["changed"] = change.changed
        _settings.report(
            env, change, data, f"{args.file}: {verb} the settings of {admin.store.location}"
        )
        return ExitStatus.OK
    if args.action == "export":
        exported = transfer.export(admin)
        if args.file:
            _write_file(Path(args.file), exported)
            env.emit(
                {"store": admin.store.location, "file": args.file},
                f"{admin.store.location} -> {args.file}",
            )
        else:
            env.stdout.write(exported.decode())
        return ExitStatus.OK
    return _status(env, admin)


def _status(env: Environment, admin: Admin) -> ExitStatus:
    store = admin.store
    source = store.document()[1]
    nodes = store.nodes()
    backlog = store.backlog()
    data = {
        "store": store.location,
        "document": source,
        "nodes": nodes,
        "backlog": backlog,
    }

    def text() -> str:
        lines = [f"store: {store.location}", f"settings: {source}"]
        for node in nodes:
            applied = node["applied_version"]
            state = "current" if not node["behind"] else f"{node['behind']} behind"
            lines.append(
                f"node {node['name']}{' (this node)' if node['this_node'] else ''}:"
                f" version {applied if applied is not None else '-'}, {state},"
                f" lag {node['lag_seconds']}s, last heard of {node['last_seen']}"
            )
        if backlog is not None:
            lines.append(f"this node's blocks waiting to be shipped: {backlog}")
        return "\n".join(lines)

    env.emit(data, text)
    return ExitStatus.OK


def _write_file(path: Path, data: bytes) -> None:
    """Write *data* to *path* atomically (0640: the daemons' group reads settings files)."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


COMMAND = Command(
    "store",
    "the store: init, import FILE, export [FILE], status (nodes and their lag)",
    configure,
    run,
    description="The store holds the settings and the shared state: file: (one host) or"
    " postgresql://... (a fleet). Move a host to a fleet with `store init URL` then"
    " `--store URL store import /etc/postwarden/settings.yaml`; and back with"
    " `--store URL store export /etc/postwarden/settings.yaml`.",
)
