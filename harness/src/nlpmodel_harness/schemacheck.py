"""Offline emulation of how a kube-apiserver accepts an object, for tests of rendered manifests.

Custom resources (:func:`check_custom_object`) go through the steps the apiserver applies to a CR
of a CRD with a structural schema, in the same order:

1. served version lookup (``apiVersion`` must name a served version of the CRD);
2. pruning: fields the schema does not declare are dropped by the apiserver (with
   ``fieldValidation=Strict``, rejected). Both are bugs in a renderer, so each is reported as
   ``"<path>: field not declared in schema (would be pruned)"``. ``null`` in a non-nullable field is
   dropped silently, as the apiserver does;
3. root ``metadata`` (and that of ``x-kubernetes-embedded-resource`` objects) checked as ObjectMeta:
   known fields, name a DNS-1123 subdomain, namespace a DNS-1123 label, label/annotation keys and
   values, ownerReferences;
4. defaulting (:func:`apply_defaults`);
5. OpenAPI v3 validation (types, ``format`` int32/int64/date-time/byte/..., enum, pattern, bounds,
   required, ``nullable``, ``x-kubernetes-int-or-string``) via ``jsonschema``;
6. ``x-kubernetes-list-type: set|map`` uniqueness;
7. CEL ``x-kubernetes-validations`` (:func:`evaluate_cel_rules`), skipped like the apiserver does when
   step 5 found a type or enum error.

Not emulated: validating/mutating admission webhooks (e.g. KServe's own InferenceService webhook),
CEL cost limits, transition rules (those using ``oldSelf``: they only run on update), the
``optionalOldSelf`` form, CEL libraries other than the Kubernetes list/string/regex ones implemented
here (``quantity``, ``url``, ``ip``, ``cidr``, ``format`` ... report an evaluation problem), Go RE2 vs
Python ``re`` differences in ``pattern``, status subresource semantics (``status`` is validated like
``spec`` rather than ignored), and server-generated fields.

Built-in kinds (:func:`check_builtin_object`) use the strict schemas shipped in ``kubernetes-validate``
(unknown fields are errors) plus the ObjectMeta checks above, container resource quantities and the
workload selector/template-label match. Other per-kind semantic validation of built-ins (port name
rules, probe handlers, ...) is not checked.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import functools
import importlib.resources
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import celpy
import celpy.celtypes as ct
import jsonschema  # type: ignore[import-untyped, unused-ignore]
import kubernetes_validate
import kubernetes_validate.utils
import re2  # type: ignore[import-untyped, unused-ignore]
import referencing

__all__ = [
    "CEL_EXTENSIONS",
    "PRUNED",
    "ROOT",
    "apply_defaults",
    "check_builtin_object",
    "check_custom_object",
    "check_object",
    "evaluate_cel_rules",
    "kubernetes_validate_versions",
    "resolve_kubernetes_version",
]

PRUNED: Final = "field not declared in schema (would be pruned)"
ROOT: Final = "<root>"
_CEL_BLOCKED: Final = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

FieldPath = tuple[str | int, ...]
Schema = Mapping[str, Any]

# --------------------------------------------------------------------------- paths


_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_$-]+$")


def _fmt_path(path: Sequence[str | int]) -> str:
    """``spec.rules[0].backendRefs[1].weight``; keys with dots or slashes as ``labels[a.b/c]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out or ROOT


def _problem(path: Sequence[str | int], message: str) -> str:
    return f"{_fmt_path(path)}: {message}"


# --------------------------------------------------------------------------- schema helpers


def _nullable(schema: Schema | None) -> bool:
    return bool(schema and schema.get("nullable"))


def _preserves_unknown(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def _embedded(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-embedded-resource"))


def _additional(schema: Schema) -> Schema | bool | None:
    extra = schema.get("additionalProperties")
    if isinstance(extra, (Mapping, bool)):
        return extra
    return None


def _is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- ObjectMeta

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_ANNOTATIONS_MAX_BYTES = 256 * 1024

_OBJECT_META_FIELDS: Final = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_OWNER_REFERENCE_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}
)


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character"
        )
    return errors


def _dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.match(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character"
        )
    return errors


def _dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL_RE.match(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character"
        )
    return errors


def _qualified_name_errors(key: str) -> list[str]:
    """Label/annotation key: ``[prefix/]name``, prefix a DNS-1123 subdomain, name <= 63 chars."""
    prefix, slash, name = key.rpartition("/")
    errors = []
    if slash:
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend(f"prefix part {e}" for e in _dns1123_subdomain_errors(prefix))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME_RE.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character"
        )
    return errors


NameValidator = Callable[[str], list[str]]


def _check_labels(labels: Any, path: FieldPath) -> list[str]:
    if not isinstance(labels, Mapping):
        return [_problem(path, "must be a map of string to string")]
    problems: list[str] = []
    for key, value in labels.items():
        problems.extend(
            _problem((*path, key), f"invalid label key: {e}") for e in _qualified_name_errors(key)
        )
        if not isinstance(value, str):
            problems.append(_problem((*path, key), "label value must be a string"))
        elif len(value) > 63:
            problems.append(_problem((*path, key), "label value must be no more than 63 characters"))
        elif not _LABEL_VALUE_RE.match(value):
            problems.append(
                _problem(
                    (*path, key),
                    f"invalid label value {value!r}: must be empty or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return problems


def _check_annotations(annotations: Any, path: FieldPath) -> list[str]:
    if not isinstance(annotations, Mapping):
        return [_problem(path, "must be a map of string to string")]
    problems: list[str] = []
    total = 0
    for key, value in annotations.items():
        problems.extend(
            _problem((*path, key), f"invalid annotation key: {e}") for e in _qualified_name_errors(key)
        )
        if not isinstance(value, str):
            problems.append(_problem((*path, key), "annotation value must be a string"))
        else:
            total += len(key) + len(value)
    if total > _ANNOTATIONS_MAX_BYTES:
        problems.append(_problem(path, f"may not be more than {_ANNOTATIONS_MAX_BYTES} bytes in total"))
    return problems


def _check_object_meta(
    meta: Any,
    path: FieldPath,
    *,
    name_validator: NameValidator = _dns1123_subdomain_errors,
    require_name: bool = True,
) -> list[str]:
    """ObjectMeta as the apiserver validates it for a create (server-set fields are not checked)."""
    if meta is None:
        return (
            [_problem((*path, "name"), "Required value: name or generateName is required")]
            if require_name
            else []
        )
    if not isinstance(meta, Mapping):
        return [_problem(path, "must be an object")]
    problems: list[str] = []  # unknown fields: reported by _prune (CRs) or the strict schema (built-ins)
    name, generate_name = meta.get("name"), meta.get("generateName")
    if name is not None and not isinstance(name, str):
        problems.append(_problem((*path, "name"), "must be a string"))
    elif name:
        problems.extend(
            _problem((*path, "name"), f"Invalid value: {name!r}: {e}") for e in name_validator(name)
        )
    elif require_name and not generate_name:
        problems.append(_problem((*path, "name"), "Required value: name or generateName is required"))
    namespace = meta.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            problems.append(_problem((*path, "namespace"), "must be a string"))
        elif namespace:
            problems.extend(
                _problem((*path, "namespace"), f"Invalid value: {namespace!r}: {e}")
                for e in _dns1123_label_errors(namespace)
            )
    if meta.get("labels") is not None:
        problems.extend(_check_labels(meta["labels"], (*path, "labels")))
    if meta.get("annotations") is not None:
        problems.extend(_check_annotations(meta["annotations"], (*path, "annotations")))
    finalizers = meta.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
            problems.append(_problem((*path, "finalizers"), "must be a list of strings"))
        else:
            for i, fin in enumerate(finalizers):
                problems.extend(
                    _problem((*path, "finalizers", i), f"Invalid value: {fin!r}: {e}")
                    for e in _qualified_name_errors(fin)
                )
    owners = meta.get("ownerReferences")
    if owners is not None:
        if not isinstance(owners, list):
            problems.append(_problem((*path, "ownerReferences"), "must be a list"))
        else:
            for i, ref in enumerate(owners):
                ref_path = (*path, "ownerReferences", i)
                if not isinstance(ref, Mapping):
                    problems.append(_problem(ref_path, "must be an object"))
                    continue
                problems.extend(
                    _problem((*ref_path, k), PRUNED) for k in ref if k not in _OWNER_REFERENCE_FIELDS
                )
                for k in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(ref.get(k), str) or not ref.get(k):
                        problems.append(_problem((*ref_path, k), "Required value"))
                for k in ("controller", "blockOwnerDeletion"):
                    if k in ref and not isinstance(ref[k], bool):
                        problems.append(_problem((*ref_path, k), "must be a boolean"))
            if sum(1 for r in owners if isinstance(r, Mapping) and r.get("controller") is True) > 1:
                problems.append(
                    _problem((*path, "ownerReferences"), "Only one reference can have Controller set")
                )
    return problems


# --------------------------------------------------------------------------- pruning


def _prune(
    value: Any, schema: Schema | None, path: FieldPath, problems: list[str], *, root: bool = False
) -> Any:
    """Copy of ``value`` without the fields the apiserver would drop; undeclared ones are reported."""
    if schema is None:
        return copy.deepcopy(value)
    if isinstance(value, list):
        items = schema.get("items")
        item_schema = items if isinstance(items, Mapping) else None
        if item_schema is None and not _preserves_unknown(schema):
            return copy.deepcopy(value)
        return [_prune(v, item_schema, (*path, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    props: Mapping[str, Schema] = schema.get("properties") or {}
    extra = _additional(schema)
    implicit = {"apiVersion", "kind", "metadata"} if root or _embedded(schema) else set()
    out: dict[str, Any] = {}
    for key, child in value.items():
        if key == "metadata" and key in implicit and isinstance(child, Mapping):
            # ObjectMeta, whatever the schema says (usually `type: object`): its unknown fields are
            # pruned too.
            problems.extend(_problem((*path, key, k), PRUNED) for k in child if k not in _OBJECT_META_FIELDS)
            out[key] = {k: copy.deepcopy(v) for k, v in child.items() if k in _OBJECT_META_FIELDS}
        elif key in props:
            sub = props[key]
            if child is None and not _nullable(sub):
                continue  # apiserver drops nulls of non-nullable fields before defaulting
            out[key] = _prune(child, sub, (*path, key), problems)
        elif isinstance(extra, Mapping):
            if child is None and not _nullable(extra):
                continue
            out[key] = _prune(child, extra, (*path, key), problems)
        elif extra is True or _preserves_unknown(schema) or key in implicit:
            out[key] = copy.deepcopy(child)
        else:
            problems.append(_problem((*path, key), PRUNED))
    return out


# --------------------------------------------------------------------------- defaulting


def apply_defaults(obj: Any, schema: Schema) -> Any:
    """A deep copy of ``obj`` with the schema's ``default`` values applied, as the apiserver does.

    A default fills a property that is absent (or ``null`` while not nullable) in an object that is
    present; the filled value is then defaulted further. Items of lists and values of maps are
    defaulted by their ``items``/``additionalProperties`` schema. ``obj`` is not modified.
    """
    return _default(copy.deepcopy(obj), schema)


def _default(value: Any, schema: Schema | None) -> Any:
    if schema is None:
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [_default(v, items) for v in value]
        return value
    if not isinstance(value, dict):
        return value
    props: Mapping[str, Schema] = schema.get("properties") or {}
    for key, sub in props.items():
        if "default" in sub and (key not in value or (value[key] is None and not _nullable(sub))):
            value[key] = copy.deepcopy(sub["default"])
    extra = _additional(schema)
    for key in list(value):
        if key in props:
            value[key] = _default(value[key], props[key])
        elif isinstance(extra, Mapping):
            value[key] = _default(value[key], extra)
    return value


# --------------------------------------------------------------------------- OpenAPI -> JSON Schema

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")

_FORMATS = jsonschema.FormatChecker(formats=())


def _int_range_check(bounds: tuple[int, int]) -> Callable[[object], bool]:
    def check(instance: object) -> bool:
        if _is_json_int(instance):
            return bounds[0] <= instance <= bounds[1]  # type: ignore[operator]
        if isinstance(instance, float) and instance.is_integer():
            return bounds[0] <= instance <= bounds[1]
        return True

    return check


_FORMATS.checks("int32")(_int_range_check(_INT32))
_FORMATS.checks("int64")(_int_range_check(_INT64))


def _is_datetime(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not _RFC3339.match(instance):
        return False
    dt.datetime.fromisoformat(instance.replace("z", "Z").replace("t", "T"))
    return True


def _is_date(instance: object) -> bool:
    if isinstance(instance, str):
        dt.date.fromisoformat(instance)
    return True


def _is_byte(instance: object) -> bool:
    if isinstance(instance, str):
        base64.b64decode(instance, validate=True)
    return True


def _is_ipv4(instance: object) -> bool:
    if isinstance(instance, str):
        ipaddress.IPv4Address(instance)
    return True


def _is_ipv6(instance: object) -> bool:
    if isinstance(instance, str):
        ipaddress.IPv6Address(instance)
    return True


def _is_cidr(instance: object) -> bool:
    if isinstance(instance, str):
        ipaddress.ip_network(instance, strict=False)
    return True


def _is_uuid(instance: object) -> bool:
    if isinstance(instance, str):
        uuid.UUID(instance)
    return True


def _is_mac(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_MAC.match(instance))


_FORMATS.checks("date-time", raises=ValueError)(_is_datetime)
_FORMATS.checks("date", raises=ValueError)(_is_date)
_FORMATS.checks("byte", raises=binascii.Error)(_is_byte)
_FORMATS.checks("ipv4", raises=ValueError)(_is_ipv4)
_FORMATS.checks("ipv6", raises=ValueError)(_is_ipv6)
_FORMATS.checks("cidr", raises=ValueError)(_is_cidr)
_FORMATS.checks("uuid", raises=ValueError)(_is_uuid)
_FORMATS.checks("mac")(_is_mac)


_COPIED_KEYWORDS: Final = (
    "type",
    "required",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "format",
)


def _is_int_or_string_pair(any_of: Any) -> bool:
    return isinstance(any_of, list) and sorted(
        str(s.get("type")) for s in any_of if isinstance(s, Mapping)
    ) == [
        "integer",
        "string",
    ]


def _to_json_schema(schema: Schema) -> dict[str, Any]:
    """Translate one OpenAPI v3 (Kubernetes structural) schema node to draft-7 JSON Schema."""
    out: dict[str, Any] = {k: copy.deepcopy(schema[k]) for k in _COPIED_KEYWORDS if k in schema}
    # OpenAPI 3.0's boolean exclusiveMinimum/Maximum modify minimum/maximum (draft-4 style).
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if schema.get(exclusive) is True and bound in schema:
            out[exclusive] = out.pop(bound)
    if isinstance(props := schema.get("properties"), Mapping):
        out["properties"] = {k: _to_json_schema(v) for k, v in props.items()}
    extra = _additional(schema)
    if isinstance(extra, Mapping):
        out["additionalProperties"] = _to_json_schema(extra)
    if isinstance(items := schema.get("items"), Mapping):
        out["items"] = _to_json_schema(items)
    for combinator in ("allOf", "anyOf", "oneOf"):
        if isinstance(subs := schema.get(combinator), list):
            out[combinator] = [_to_json_schema(s) for s in subs]
    if isinstance(negated := schema.get("not"), Mapping):
        out["not"] = _to_json_schema(negated)
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        if _is_int_or_string_pair(schema.get("anyOf")):
            out.pop("anyOf", None)  # the canonical pair only restates the type; it makes noisy errors
    if _nullable(schema):
        # A null in a nullable field is accepted whatever the other keywords say.
        return {"if": {"type": "null"}, "then": True, "else": out}
    return out


_TRANSLATIONS: dict[int, tuple[Schema, dict[str, Any]]] = {}


def _translated(schema: Schema) -> dict[str, Any]:
    # Keyed by identity and holding a reference, so the id cannot be reused by another object.
    hit = _TRANSLATIONS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    if len(_TRANSLATIONS) > 64:
        _TRANSLATIONS.clear()
    translated = _to_json_schema(schema)
    _TRANSLATIONS[id(schema)] = (schema, translated)
    return translated


def _schema_errors(value: Any, schema: Schema) -> tuple[list[str], bool]:
    """Problems from OpenAPI validation, and whether one of them blocks CEL (type or enum)."""
    validator = jsonschema.Draft7Validator(_translated(schema), format_checker=_FORMATS)
    problems: list[str] = []
    blocking = False
    seen: set[str] = set()
    for err in validator.iter_errors(value):
        path: FieldPath = tuple(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, Mapping):
            texts = [
                _problem((*path, name), "Required value")
                for name in err.validator_value
                if name not in err.instance
            ]
        elif err.validator == "format":
            texts = [
                _problem(path, f"Invalid value: {err.instance!r}: must be of format {err.validator_value}")
            ]
        else:
            texts = [_problem(path, err.message)]
            blocking = blocking or err.validator in ("type", "enum")
        for text in texts:
            if text not in seen:
                seen.add(text)
                problems.append(text)
    return problems, blocking


# --------------------------------------------------------------------------- list-type and embedded


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _walk(value: Any, schema: Schema | None, path: FieldPath) -> Iterator[tuple[Any, Schema, FieldPath]]:
    """Every (value, schema, path) of the object where a schema node applies, pre-order."""
    if schema is None or value is None:
        return
    yield value, schema, path
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, v in enumerate(value):
                yield from _walk(v, items, (*path, i))
    elif isinstance(value, Mapping):
        props: Mapping[str, Schema] = schema.get("properties") or {}
        extra = _additional(schema)
        for key, v in value.items():
            if key in props:
                yield from _walk(v, props[key], (*path, key))
            elif isinstance(extra, Mapping):
                yield from _walk(v, extra, (*path, key))


def _list_type_errors(value: Any, schema: Schema) -> list[str]:
    problems = []
    for node, sub, path in _walk(value, schema, ()):
        if not isinstance(node, list):
            continue
        list_type = sub.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: set[str] = set()
            for i, item in enumerate(node):
                key = _canonical(item)
                if key in seen:
                    problems.append(_problem((*path, i), f"Duplicate value: {item!r}"))
                seen.add(key)
        elif list_type == "map":
            keys = sub.get("x-kubernetes-list-map-keys") or []
            seen_keys: set[str] = set()
            for i, item in enumerate(node):
                if not isinstance(item, Mapping):
                    continue
                key_values = {k: item.get(k) for k in keys}
                key = _canonical(key_values)
                if key in seen_keys:
                    problems.append(_problem((*path, i), f"Duplicate value: {key_values!r}"))
                seen_keys.add(key)
    return problems


def _embedded_errors(value: Any, schema: Schema) -> list[str]:
    problems = []
    for node, sub, path in _walk(value, schema, ()):
        if path and _embedded(sub) and isinstance(node, Mapping):
            for field in ("apiVersion", "kind"):
                if not node.get(field):
                    problems.append(_problem((*path, field), "Required value"))
            if "metadata" in node:
                problems.extend(_check_object_meta(node["metadata"], (*path, "metadata"), require_name=False))
    return problems


# --------------------------------------------------------------------------- CEL

_CEL_RESERVED: Final = frozenset(
    {
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_CEL_IDENT = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
_OLD_SELF = re.compile(r"\boldSelf\b")


def _cel_escape(name: str) -> str | None:
    """Kubernetes' property-name escaping for CEL; None when the property is not accessible."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    escaped = (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )
    return escaped if _CEL_IDENT.match(escaped) else None


def _to_cel(value: Any, schema: Schema | None) -> Any:
    """JSON value -> celpy value, typed by the schema as Kubernetes does."""
    if value is None:
        return None
    schema = schema or {}
    if isinstance(value, bool):
        return ct.BoolType(value)
    if _is_json_int(value) or isinstance(value, float):
        if schema.get("type") == "number":
            return ct.DoubleType(float(value))
        if isinstance(value, float) and not (schema.get("type") == "integer" and value.is_integer()):
            return ct.DoubleType(value)
        return ct.IntType(int(value))
    if isinstance(value, str):
        fmt = schema.get("format")
        try:
            if fmt == "date-time":
                return ct.TimestampType(value)
            if fmt == "duration":
                return ct.DurationType(value)
        except ValueError:
            pass  # schema validation reports the bad format
        return ct.StringType(value)
    if isinstance(value, list):
        items = schema.get("items")
        return ct.ListType([_to_cel(v, items if isinstance(items, Mapping) else None) for v in value])
    if isinstance(value, Mapping):
        props: Mapping[str, Schema] = schema.get("properties") or {}
        extra = _additional(schema)
        out: dict[Any, Any] = {}
        for key, v in value.items():
            if key in props:
                name = _cel_escape(key)
                if name is not None:
                    out[ct.StringType(name)] = _to_cel(v, props[key])
            else:  # map entries (and unknown fields) keep their keys: accessed as self['key']
                out[ct.StringType(key)] = _to_cel(v, extra if isinstance(extra, Mapping) else None)
        return ct.MapType(out)
    return value


def _ascii_case(text: str, *, upper: bool) -> str:
    if upper:
        return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in text)
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _need(value: Any, *types: type) -> None:
    if not isinstance(value, types):
        # celpy turns TypeError into a "no such overload" evaluation error, like CEL.
        raise TypeError(f"no such overload for {type(value).__name__}")


def _cel_is_sorted(values: Any) -> Any:
    _need(values, ct.ListType)
    return ct.BoolType(all(values[i] <= values[i + 1] for i in range(len(values) - 1)))


def _cel_sum(values: Any) -> Any:
    _need(values, ct.ListType)
    if not values:
        return ct.IntType(0)
    return functools.reduce(lambda a, b: a + b, values)


def _cel_min(values: Any) -> Any:
    _need(values, ct.ListType)
    if not values:
        raise ValueError("min called on empty list")
    return functools.reduce(lambda a, b: b if b < a else a, values)


def _cel_max(values: Any) -> Any:
    _need(values, ct.ListType)
    if not values:
        raise ValueError("max called on empty list")
    return functools.reduce(lambda a, b: b if b > a else a, values)


def _cel_index_of(target: Any, item: Any, start: Any = None) -> Any:
    if isinstance(target, ct.ListType):
        return ct.IntType(next((i for i, v in enumerate(target) if type(v) is type(item) and v == item), -1))
    _need(target, ct.StringType)
    _need(item, ct.StringType)
    offset = 0 if start is None else int(start)
    if offset < 0 or offset > len(target):
        raise ValueError(f"index out of range: {offset}")
    return ct.IntType(str(target).find(str(item), offset))


def _cel_last_index_of(target: Any, item: Any, end: Any = None) -> Any:
    if isinstance(target, ct.ListType):
        hits = [i for i, v in enumerate(target) if type(v) is type(item) and v == item]
        return ct.IntType(hits[-1] if hits else -1)
    _need(target, ct.StringType)
    _need(item, ct.StringType)
    if end is None:
        return ct.IntType(str(target).rfind(str(item)))
    offset = int(end)
    if offset < 0 or offset >= len(target):
        raise ValueError(f"index out of range: {offset}")
    return ct.IntType(str(target).rfind(str(item), 0, offset + len(item)))


def _cel_lower_ascii(text: Any) -> Any:
    _need(text, ct.StringType)
    return ct.StringType(_ascii_case(str(text), upper=False))


def _cel_upper_ascii(text: Any) -> Any:
    _need(text, ct.StringType)
    return ct.StringType(_ascii_case(str(text), upper=True))


def _cel_trim(text: Any) -> Any:
    _need(text, ct.StringType)
    return ct.StringType(str(text).strip())


def _cel_replace(text: Any, old: Any, new: Any, limit: Any = None) -> Any:
    _need(text, ct.StringType)
    count = -1 if limit is None else int(limit)
    return ct.StringType(str(text).replace(str(old), str(new), count))


def _cel_split(text: Any, sep: Any, limit: Any = None) -> Any:
    _need(text, ct.StringType)
    n = -1 if limit is None else int(limit)
    if n == 0:
        return ct.ListType([])
    parts = str(text).split(str(sep), -1 if n < 0 else n - 1) if str(sep) else list(str(text))
    return ct.ListType([ct.StringType(p) for p in parts])


def _cel_substring(text: Any, start: Any, end: Any = None) -> Any:
    _need(text, ct.StringType)
    lo, hi = int(start), len(text) if end is None else int(end)
    if not 0 <= lo <= hi <= len(text):
        raise ValueError(f"substring({lo}, {hi}) out of range")
    return ct.StringType(str(text)[lo:hi])


def _cel_char_at(text: Any, index: Any) -> Any:
    _need(text, ct.StringType)
    i = int(index)
    if not 0 <= i <= len(text):
        raise ValueError(f"index out of range: {i}")
    return ct.StringType(str(text)[i : i + 1])


def _cel_join(values: Any, sep: Any = None) -> Any:
    _need(values, ct.ListType)
    for v in values:
        _need(v, ct.StringType)
    return ct.StringType(("" if sep is None else str(sep)).join(str(v) for v in values))


def _cel_find(text: Any, pattern: Any) -> Any:
    _need(text, ct.StringType)
    match = re2.search(str(pattern), str(text))
    return ct.StringType(match.group(0) if match else "")


def _cel_find_all(text: Any, pattern: Any, limit: Any = None) -> Any:
    _need(text, ct.StringType)
    found = [m.group(0) for m in re2.finditer(str(pattern), str(text))]
    if limit is not None and int(limit) >= 0:
        found = found[: int(limit)]
    return ct.ListType([ct.StringType(f) for f in found])


# Kubernetes' CEL libraries (lists, strings, regex) that celpy lacks. celpy resolves a method call
# `x.f(a)` as the function f(x, a), so one function serves both list and string receivers.
CEL_EXTENSIONS: Final[dict[str, Callable[..., Any]]] = {
    "isSorted": _cel_is_sorted,
    "sum": _cel_sum,
    "min": _cel_min,
    "max": _cel_max,
    "indexOf": _cel_index_of,
    "lastIndexOf": _cel_last_index_of,
    "lowerAscii": _cel_lower_ascii,
    "upperAscii": _cel_upper_ascii,
    "trim": _cel_trim,
    "replace": _cel_replace,
    "split": _cel_split,
    "substring": _cel_substring,
    "charAt": _cel_char_at,
    "join": _cel_join,
    "find": _cel_find,
    "findAll": _cel_find_all,
}

_CEL_ENV = celpy.Environment()


@functools.lru_cache(maxsize=2048)
def _cel_program(expression: str) -> Any:
    return _CEL_ENV.program(_CEL_ENV.compile(expression), functions=CEL_EXTENSIONS)


def _cel_eval(expression: str, value: Any) -> Any:
    """Evaluate; returns the result or raises (celpy errors, or parse errors)."""
    return _cel_program(expression).evaluate({"self": value})


def _rule_message(rule: Mapping[str, Any], value: Any) -> str:
    if expr := rule.get("messageExpression"):
        try:
            msg = _cel_eval(str(expr), value)
            if isinstance(msg, str) and msg.strip():
                return str(msg)
        except Exception:  # the apiserver falls back to `message` on any failure
            pass
    return str(rule.get("message") or f"failed rule: {rule.get('rule')}")


def _field_path(base: FieldPath, field_path: Any) -> FieldPath:
    """Append a rule's ``fieldPath`` (``.spec.x``, ``.a['b']``, ``.list[0]``) to the node path."""
    if not isinstance(field_path, str) or not field_path:
        return base
    parts: list[str | int] = []
    for dotted, quoted, index in re.findall(r"\.([A-Za-z0-9_$-]+)|\['([^']*)'\]|\[(\d+)\]", field_path):
        parts.append(int(index) if index else (dotted or quoted))
    return (*base, *parts)


def evaluate_cel_rules(obj: Any, schema: Schema) -> list[str]:
    """Problems from the ``x-kubernetes-validations`` rules of ``schema`` applied to ``obj``.

    Defaults are applied first. Each rule runs with ``self`` bound to the value at its node; nodes
    whose value is absent or null are skipped (``has()`` of an absent field is false). Rules that
    reference ``oldSelf`` are transition rules, which the apiserver runs only on updates: they are
    skipped. A failing rule reports its ``messageExpression`` result, ``message`` or the rule; a rule
    that cannot be evaluated (runtime error, unsupported function) is reported as such.
    """
    problems: list[str] = []
    defaulted = apply_defaults(obj, schema)
    for node, sub, path in _walk(defaulted, schema, ()):
        rules = sub.get("x-kubernetes-validations")
        if not rules:
            continue
        cel_value = _to_cel(node, sub)
        for rule in rules:
            text = str(rule.get("rule", ""))
            if _OLD_SELF.search(text):
                continue
            where = _field_path(path, rule.get("fieldPath"))
            try:
                result = _cel_eval(text, cel_value)
            except Exception as exc:  # celpy raises CELEvalError, parse errors, ...
                problems.append(_problem(where, f"rule {text!r} could not be evaluated: {exc}"))
                continue
            if not isinstance(result, ct.BoolType):
                problems.append(_problem(where, f"rule {text!r} evaluated to non-bool {result!r}"))
            elif not result:
                problems.append(_problem(where, _rule_message(rule, cel_value)))
    return problems


# --------------------------------------------------------------------------- custom objects


def _split_api_version(api_version: Any) -> tuple[str, str]:
    text = str(api_version or "")
    group, _, version = text.rpartition("/")
    return group, version


def _served_schema(crd: Mapping[str, Any], version: str) -> tuple[Schema | None, str | None]:
    for ver in crd.get("spec", {}).get("versions", []):
        if ver.get("name") == version:
            if not ver.get("served", False):
                return None, f"version {version!r} is not served by CRD {crd.get('metadata', {}).get('name')}"
            schema = (ver.get("schema") or {}).get("openAPIV3Schema")
            return (schema if isinstance(schema, Mapping) else {"type": "object"}), None
    known = [v.get("name") for v in crd.get("spec", {}).get("versions", [])]
    return (
        None,
        f"version {version!r} is not defined by CRD {crd.get('metadata', {}).get('name')} (has {known})",
    )


def check_custom_object(obj: Mapping[str, Any], crd: Mapping[str, Any]) -> list[str]:
    """Problems a kube-apiserver would have creating ``obj`` as a custom resource of ``crd``.

    Empty list = accepted. Each problem is ``"<path>: <message>"``; fields the apiserver would prune
    are reported as ``"<path>: field not declared in schema (would be pruned)"``.
    """
    spec = crd.get("spec", {})
    group, version = _split_api_version(obj.get("apiVersion"))
    problems: list[str] = []
    if group != spec.get("group"):
        problems.append(
            _problem(("apiVersion",), f"group {group!r} is not the CRD's group {spec.get('group')!r}")
        )
    if obj.get("kind") != spec.get("names", {}).get("kind"):
        problems.append(
            _problem(("kind",), f"{obj.get('kind')!r} is not the CRD's kind {spec['names']['kind']!r}")
        )
    schema, error = _served_schema(crd, version)
    if schema is None:
        return [*problems, _problem(("apiVersion",), error or "no schema")]

    pruned = _prune(obj, schema, (), problems, root=True)
    problems.extend(_check_object_meta(obj.get("metadata"), ("metadata",)))
    defaulted = apply_defaults(pruned, schema)
    schema_problems, blocking = _schema_errors(defaulted, schema)
    problems.extend(schema_problems)
    problems.extend(_list_type_errors(defaulted, schema))
    problems.extend(_embedded_errors(defaulted, schema))
    if blocking:
        problems.append(_problem((), _CEL_BLOCKED))
    else:
        problems.extend(evaluate_cel_rules(defaulted, schema))
    return problems


# --------------------------------------------------------------------------- built-in objects

# Built-in API groups: a CRD could reuse a kind name ("Deployment") in its own group, and
# kubernetes-validate looks schemas up by the first label of the group only.
_BUILTIN_GROUPS: Final = frozenset({"", "apps", "batch", "autoscaling", "policy", "extensions"})

# Names that must be DNS-1035 labels rather than DNS-1123 subdomains.
_NAME_RULES: Final[dict[tuple[str, str], NameValidator]] = {
    ("", "Service"): _dns1035_label_errors,
    ("", "Namespace"): _dns1123_label_errors,
}
_WORKLOADS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})


def _is_builtin_group(group: str) -> bool:
    return group in _BUILTIN_GROUPS or group.endswith(".k8s.io")


def _version_key(version: str) -> tuple[int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)", version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return int(match.group(1)), int(match.group(2))


def kubernetes_validate_versions() -> list[str]:
    """The Kubernetes versions ``kubernetes-validate`` ships schemas for, oldest first."""
    return sorted(set(kubernetes_validate.utils.all_versions()), key=_version_key)


def resolve_kubernetes_version(requested: str) -> str:
    """The oldest shipped schema version that is not older than ``requested`` (major.minor)."""
    want = _version_key(requested)
    for version in kubernetes_validate_versions():
        if _version_key(version) >= want:
            return version
    raise ValueError(
        f"kubernetes-validate {kubernetes_validate.__version__} ships schemas up to "
        f"{kubernetes_validate_versions()[-1]}; cannot check against Kubernetes {requested}"
    )


@functools.lru_cache(maxsize=256)
def _builtin_validator(version: str, kind: str, api_version: str) -> Any:
    # Same lookup as kubernetes_validate.validate(), but we want every error, not just the first.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    base = (
        importlib.resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{version}-local-strict"
    )
    schema_file = base / f"{kind.lower()}-{api}.json"
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text())
    definitions = json.loads((base / "_definitions.json").read_text())
    registry: referencing.Registry[Any] = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _selector_errors(obj: Mapping[str, Any]) -> list[str]:
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    labels = template_meta.get("labels") or {}
    problems = []
    if isinstance(template_meta, Mapping) and template_meta.get("labels") is not None:
        problems.extend(_check_labels(labels, ("spec", "template", "metadata", "labels")))
    if (
        isinstance(selector, Mapping)
        and isinstance(labels, Mapping)
        and any(labels.get(k) != v for k, v in selector.items())
    ):
        problems.append(
            _problem(
                ("spec", "template", "metadata", "labels"),
                "Invalid value: `selector` does not match template `labels`",
            )
        )
    return problems


# The apiserver's resource.Quantity grammar (the pattern CRDs carry for int-or-string quantities).
_QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity_errors(value: Any, path: FieldPath = ()) -> list[str]:
    """Container resource quantities: kubernetes-validate's schemas accept any string there."""
    problems: list[str] = []
    if isinstance(value, Mapping):
        for key, child in value.items():
            if (
                key in ("limits", "requests")
                and path
                and path[-1] == "resources"
                and isinstance(child, Mapping)
            ):
                problems.extend(
                    _problem(
                        (*path, key, name),
                        f"Invalid value: {q!r}: quantities must match {_QUANTITY_RE.pattern}",
                    )
                    for name, q in child.items()
                    if isinstance(q, str) and not _QUANTITY_RE.match(q)
                )
            else:
                problems.extend(_quantity_errors(child, (*path, key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            problems.extend(_quantity_errors(child, (*path, i)))
    return problems


def check_builtin_object(obj: Mapping[str, Any], kubernetes_version: str = "1.30.0") -> list[str]:
    """Problems with a built-in kind against kubernetes-validate's strict schema (unknown fields are
    errors) for the oldest shipped Kubernetes version >= ``kubernetes_version``, plus ObjectMeta."""
    version = resolve_kubernetes_version(kubernetes_version)
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    group, _ = _split_api_version(api_version)
    validator = _builtin_validator(version, kind, api_version) if _is_builtin_group(group) else None
    if validator is None:
        return [_problem(("kind",), f"{api_version} {kind} is not a built-in kind of Kubernetes {version}")]
    problems: list[str] = []
    for err in validator.iter_errors(dict(obj)):
        path: FieldPath = tuple(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, Mapping):
            problems.extend(
                _problem((*path, n), "Required value") for n in err.validator_value if n not in err.instance
            )
        elif err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            declared = err.schema.get("properties", {}) if isinstance(err.schema, Mapping) else {}
            problems.extend(_problem((*path, k), PRUNED) for k in err.instance if k not in declared)
        else:
            problems.append(_problem(path, err.message))
    name_rule = _NAME_RULES.get((group, kind), _dns1123_subdomain_errors)
    problems.extend(_check_object_meta(obj.get("metadata"), ("metadata",), name_validator=name_rule))
    problems.extend(_quantity_errors(obj))
    if group == "apps" and kind in _WORKLOADS:
        problems.extend(_selector_errors(obj))
    return problems


# --------------------------------------------------------------------------- dispatch


def check_object(
    obj: Mapping[str, Any],
    crds: Iterable[Mapping[str, Any]],
    *,
    kubernetes_version: str = "1.30.0",
) -> list[str]:
    """Check ``obj`` against the CRD of its group/kind among ``crds``, else as a built-in kind."""
    group, _ = _split_api_version(obj.get("apiVersion"))
    kind = obj.get("kind")
    for crd in crds:
        spec = crd.get("spec", {})
        if spec.get("group") == group and spec.get("names", {}).get("kind") == kind:
            return check_custom_object(obj, crd)
    if _is_builtin_group(group):
        return check_builtin_object(obj, kubernetes_version)
    return [
        _problem(
            ("kind",),
            f"unknown kind {obj.get('apiVersion')} {kind}: no CRD given for it and not a built-in kind",
        )
    ]
