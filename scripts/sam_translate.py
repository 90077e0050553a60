#!/usr/bin/env python3
"""The template as CloudFormation receives it: infra/template.yaml through the SAM translator (the
samtranslator of .venv-sam, offline). Prints the translated template as JSON on stdout.

  .venv-sam/bin/python scripts/sam_translate.py PARAMETERS_JSON

scripts/iam_coverage.py reads the IAM roles SAM makes for the functions from it, so that what it
holds the recorded calls against is what SAM really grants, not a copy of SAM's rules."""

from __future__ import annotations

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "infra", "template.yaml")


class NoManagedPolicies:
    """Managed policy names are not resolved to ARNs here (that would ask IAM): the template names
    its managed policies by ARN."""

    def load(self) -> dict:
        return {}


def main(argv: list[str]) -> int:
    parameters = json.loads(argv[0]) if argv else {}
    with open(TEMPLATE) as f:
        template = yaml_parse(f.read())
    # The code's location is `sam build`'s business; the translator only checks its form.
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/key"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    json.dump(transform(template, parameters, NoManagedPolicies()), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
