#!/usr/bin/env python3
"""Checks a Compose file offline: valid against the Compose Specification's JSON schema
(deploy/schema/compose-spec.json, vendored) and every file it names on the host exists
(configs and secrets `file:`, relative bind-mount sources, `env_file`, each build's context
and Dockerfile), relative to the Compose file's directory as `docker compose` resolves them.

    scripts/check-compose.py [--schema deploy/schema/compose-spec.json] [--directory DIR] deploy/compose.yaml

--directory resolves the relative paths against DIR instead (a copy checked elsewhere).

Prints `FILE: ok` and exits 0, or one line per problem and exits 1. Needs `jsonschema` and
`PyYAML` (scripts/install-deps.sh puts both in .venv/ from scripts/requirements-test.txt).
"""
import argparse
import json
import os
import sys

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files_named(document):
    """(where, path) for every host file or directory the Compose file refers to."""
    for section in ("configs", "secrets"):
        for name, entry in (document.get(section) or {}).items():
            if isinstance(entry, dict) and "file" in entry:
                yield f"{section}.{name}.file", entry["file"], False
    for name, service in (document.get("services") or {}).items():
        build = service.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if isinstance(build, dict):
            context = build.get("context", ".")
            if "://" not in context:
                yield f"services.{name}.build.context", context, True
                if "dockerfile" in build:
                    yield f"services.{name}.build.dockerfile", os.path.join(context, build["dockerfile"]), False
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            path = entry["path"] if isinstance(entry, dict) else entry
            if not (isinstance(entry, dict) and entry.get("required") is False):
                yield f"services.{name}.env_file", path, False
        for volume in service.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                yield f"services.{name}.volumes", source, True


def check(path, schema, directory=None):
    with open(path, encoding="utf-8") as file:
        try:
            document = yaml.safe_load(file)
        except yaml.YAMLError as error:
            return [f"{path}: not YAML: {error}"]
    problems = []
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        problems.append(f"{path}: {where}: {error.message}")
    if problems:
        return problems
    base = os.path.abspath(directory) if directory else os.path.dirname(os.path.abspath(path))
    for where, named, directory in files_named(document):
        full = os.path.normpath(os.path.join(base, named))
        exists = os.path.isdir(full) if directory else os.path.isfile(full)
        if not exists:
            problems.append(f"{path}: {where}: {named} does not exist ({full})")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", default=os.path.join(ROOT, "deploy/schema/compose-spec.json"))
    parser.add_argument("--directory", help="resolve relative paths against this directory")
    parser.add_argument("compose", nargs="+")
    arguments = parser.parse_args()
    with open(arguments.schema, encoding="utf-8") as file:
        schema = json.load(file)
    failed = False
    for path in arguments.compose:
        problems = check(path, schema, arguments.directory)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{path}: ok")
        failed = failed or bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
