"""Offline validation of Kubernetes manifests: MPIJobs against the MPIJob CRD's
``openAPIV3Schema`` (``jsonschema``), everything else, the MPIJob's pod templates and its
metadata against the Kubernetes core schemas (``kubernetes-validate``).

``check_documents(docs, crd) -> [problem, ...]`` (one line each; empty: valid). Stricter than an
API server in one way, as ``kubectl apply --validate=strict`` is: a field the schema does not
declare (``fsGroup`` in a container ``securityContext``) is a problem, not silently pruned.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from packager.errors import UsageError

MPIJOB_GROUP = "kubeflow.org"
MAX_PROBLEMS_PER_DOCUMENT = 20
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
INSTALL_HINT = "pip install 'modelpkg[k8s]' (jsonschema, kubernetes-validate)"


def _libraries():
    try:
        import jsonschema
        import kubernetes_validate
    except ImportError as exc:
        raise UsageError(f"modelpkg k8s --check needs {exc.name}: {INSTALL_HINT}") from None
    return jsonschema, kubernetes_validate


def load_yaml_documents(path: Path, what: str) -> list[Any]:
    """The YAML documents of ``path`` (empty ones dropped); a ``UsageError`` naming the line of
    a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path} not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path} is not a UTF-8 text file ({type(exc).__name__})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what} {path} is not valid YAML{where}: {reason}") from None


def crd_schemas(docs: list[Any], path: Path) -> dict[str, dict]:
    """``{apiVersion: openAPIV3Schema}`` of the served versions of the MPIJob CRD in ``docs``
    (a CRD document as ``kubectl get crd mpijobs.kubeflow.org -o yaml`` prints it, or a List
    holding it)."""
    items = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            items += doc.get("items") or []
        else:
            items.append(doc)
    for doc in items:
        if not (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"):
            continue
        spec = doc.get("spec") or {}
        if spec.get("group") != MPIJOB_GROUP or (spec.get("names") or {}).get("kind") != "MPIJob":
            continue
        schemas = {}
        for version in spec.get("versions") or []:
            schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
            if version.get("served", True) and isinstance(schema, dict):
                schemas[f"{MPIJOB_GROUP}/{version.get('name')}"] = schema
        if schemas:
            return schemas
    raise UsageError(f"--crd {path} holds no CustomResourceDefinition of MPIJob ({MPIJOB_GROUP}) with an "
                     "openAPIV3Schema; give the file `kubectl get crd mpijobs.kubeflow.org -o yaml` prints")


def strict_schema(schema: Any) -> Any:
    """The CRD's structural schema as JSON Schema (draft 4): unknown fields are errors (where
    the schema does not preserve them), ``nullable`` admits null, int-or-string admits both."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _where(path: Iterable[Any]) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else ("." if out else "") + str(item)
    return out or "(top level)"


def _message(error: Any) -> str:
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        return f"unknown field{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} (allowed: {', '.join(known)})"
    return error.message


def _schema_problems(validator: Any, instance: Any) -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    lines = [f"{_where(e.absolute_path)}: {_message(e)}" for e in errors[:MAX_PROBLEMS_PER_DOCUMENT]]
    if len(errors) > MAX_PROBLEMS_PER_DOCUMENT:
        lines.append(f"... and {len(errors) - MAX_PROBLEMS_PER_DOCUMENT} more")
    return lines


def _core_problems(resource: dict, prefix: str = "") -> list[str]:
    """``resource`` (apiVersion, kind, ...) against the Kubernetes core schemas, strict."""
    _, kv = _libraries()
    version = kv.latest_version()
    try:
        kv.validate(resource, version, strict=True)
    except kv.SchemaNotFoundError:
        return [f"{prefix or '(top level)'}: no Kubernetes {version} schema for {resource.get('apiVersion')} "
                f"{resource.get('kind')}"]
    except kv.ValidationError as exc:  # the first problem (the library stops there)
        where = _where(exc.absolute_path)
        if prefix:
            where = prefix if where == "(top level)" else f"{prefix}.{where}"
        return [f"{where}: {_message(exc)}"]
    return []


def _names_and_mounts(pod_spec: dict, prefix: str) -> list[str]:
    """What the schemas cannot say: volume mounts name a volume of the pod."""
    volumes = {v.get("name") for v in pod_spec.get("volumes") or [] if isinstance(v, dict)}
    problems = []
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(pod_spec.get(kind) or []):
            for j, mount in enumerate((container or {}).get("volumeMounts") or []):
                if isinstance(mount, dict) and mount.get("name") not in volumes:
                    problems.append(f"{prefix}.{kind}[{i}].volumeMounts[{j}].name: {mount.get('name')!r} "
                                    "names no volume of the pod")
    return problems


def _metadata_problems(doc: dict) -> list[str]:
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    if not isinstance(name, str) or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return [f"metadata.name: {name!r} is not a valid object name (lower-case DNS subdomain)"]
    return []


def check_mpijob(doc: dict, schemas: dict[str, dict]) -> list[str]:
    jsonschema, _ = _libraries()
    api = doc.get("apiVersion")
    if api not in schemas:
        return [f"apiVersion: {api!r} is not served by the MPIJob CRD (served: {', '.join(sorted(schemas))})"]
    validator = jsonschema.Draft4Validator(strict_schema(schemas[api]))
    problems = _schema_problems(validator, doc)
    problems += _metadata_problems(doc)
    # ObjectMeta is only "type: object" in a CRD: check it with the core schema (a ConfigMap's)
    problems += _core_problems({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata") or {}})
    specs = ((doc.get("spec") or {}).get("mpiReplicaSpecs") or {})
    for role, replica in specs.items() if isinstance(specs, dict) else ():
        template = (replica or {}).get("template") if isinstance(replica, dict) else None
        if not isinstance(template, dict):
            continue
        at = f"spec.mpiReplicaSpecs.{role}.template"
        problems += _core_problems({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                    "template": template}, prefix=at.rsplit(".template", 1)[0])
        problems += _names_and_mounts(template.get("spec") or {}, f"{at}.spec")
    return list(dict.fromkeys(problems))


def check_documents(docs: list[Any], schemas: dict[str, dict] | None) -> list[str]:
    """One line per problem, each naming its document (``document N (KIND NAME)``)."""
    problems = []
    for index, doc in enumerate(docs, 1):
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            problems.append(f"document {index}: not a Kubernetes object (needs apiVersion and kind)")
            continue
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        label = f"document {index} ({doc['kind']} {name or '?'})"
        if doc["kind"] == "MPIJob":
            if schemas is None:
                raise UsageError(f"document {index} is an MPIJob: give its CRD with --crd FILE "
                                 "(kubectl get crd mpijobs.kubeflow.org -o yaml > mpijobs-crd.yaml)")
            found = check_mpijob(copy.deepcopy(doc), schemas)
        else:
            found = _metadata_problems(doc) + _core_problems(doc)
        problems += [f"{label}: {p}" for p in found]
    return problems


def check_file(path: Path, crd: Path | None) -> tuple[int, list[str]]:
    """(number of documents, problems) of the manifest ``path``."""
    docs = load_yaml_documents(path, "manifest")
    if not docs:
        raise UsageError(f"manifest {path} holds no YAML document")
    schemas = crd_schemas(load_yaml_documents(crd, "--crd"), crd) if crd is not None else None
    return len(docs), check_documents(docs, schemas)
