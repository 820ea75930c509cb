"""``vnstitch schema config|scenario|api``: the JSON Schema of a file or of the API bodies.

The schemas are generated from the pydantic models that validate the files
(:class:`vnstitch.daemon.config_model.ConfigFile`,
:class:`vnstitch.sim.scenario_model.ScenarioFile`) and the HTTP API's request and
response models, so an editor (``yaml-language-server``'s ``# yaml-language-server:
$schema=...``) checks exactly what the program will accept.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vnstitch import __version__

KINDS = ("config", "scenario", "api")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema", help="print the JSON Schema of the config file, scenario files or "
                       "the HTTP API's bodies",
        description="Print a JSON Schema (draft 2020-12) generated from the models the "
        "program validates with: 'config' is a Route Manager's config file, 'scenario' a "
        "simulation / lab scenario, 'api' the HTTP API's request and response bodies.")
    p.add_argument("kind", choices=KINDS, help="which schema: " + ", ".join(KINDS))
    p.add_argument("--json", action="store_true",
                   help="one compact JSON line instead of an indented document")
    p.set_defaults(handler=_schema)


def schema_of(kind: str) -> dict[str, Any]:
    """The JSON Schema document for ``kind`` (one of :data:`KINDS`)."""
    # Imported here: each model pulls in its own layer.
    if kind == "config":
        from vnstitch.daemon.config_model import ConfigFile  # noqa: PLC0415

        doc = ConfigFile.model_json_schema()
    elif kind == "scenario":
        from vnstitch.sim.scenario_model import ScenarioFile  # noqa: PLC0415

        doc = ScenarioFile.model_json_schema()
    else:
        from vnstitch.daemon.api_models import openapi_document  # noqa: PLC0415

        components = openapi_document(__version__)["components"]["schemas"]
        doc = {"title": "vnstitch HTTP API bodies", "$defs": components}
        text = json.dumps(doc).replace("#/components/schemas/", "#/$defs/")
        doc = json.loads(text)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://vnstitch.invalid/schema/{kind}/{__version__}", **doc}


def _schema(args: argparse.Namespace) -> int:
    doc = schema_of(args.kind)
    sys.stdout.write((json.dumps(doc) if args.json else json.dumps(doc, indent=2)) + "\n")
    return 0
