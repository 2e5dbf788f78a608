"""Renders the Helm chart with Helm's own engine and checks what it renders.

Reads one JSON object on stdin: {"chart": PATH, "values": {...},
"release": NAME, "namespace": NS, "kube_versions": ["1.29.0", ...],
"load_yaml": [PATH, ...]}.
Prints one JSON object:

- {"refused": MESSAGE} when Helm refuses the values (the chart's schema or
  a `fail` in a template), or
- {"lint": [messages], "lint_errors": [...], "notes": TEXT,
   "objects": [{"template", "object", "invalid": {version: error},
                "schema": "validated" | "no schema"}],
   "loaded": [each file of load_yaml, parsed]}

Every rendered object is validated, strictly (unknown fields are errors),
against the Kubernetes API schemas of each version asked for. Kinds those
schemas do not have (the Prometheus Operator's CRDs) say "no schema"; the
test checks them its own way.
"""

import json
import sys

import helm_python as helm
import kubernetes_validate
import yaml


def load(path: str):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def main() -> None:
    request = json.load(sys.stdin)
    chart_path = request["chart"]
    values = request.get("values", {})
    try:
        with helm.Chart.load(chart_path) as chart:
            chart.validate_schema(values)
            rendered = chart.render(
                values,
                name=request.get("release", "herald"),
                namespace=request.get("namespace", "default"),
                is_install=True,
            )
    except helm.HelmError as error:
        json.dump({"refused": str(error)}, sys.stdout)
        return
    linted = helm.lint(chart_path, values, strict=True, namespace=request.get("namespace"))
    objects = []
    notes = ""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for obj in yaml.safe_load_all(text):
            if not obj:
                continue
            invalid = {}
            schema = "validated"
            for version in request.get("kube_versions", ["1.29.0"]):
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    schema = "no schema"
                except kubernetes_validate.ValidationError as error:
                    path = "/".join(str(p) for p in error.path)
                    invalid[version] = f"{path}: {error.message}"
            objects.append(
                {"template": template, "object": obj, "invalid": invalid, "schema": schema}
            )
    json.dump(
        {
            "lint": [m["error"] for m in linted.get("messages", [])],
            "lint_errors": linted.get("errors", []),
            "notes": notes,
            "objects": objects,
            "loaded": [load(path) for path in request.get("load_yaml", [])],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
