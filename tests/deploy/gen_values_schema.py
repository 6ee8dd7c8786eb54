"""Generate charts/carevault/values.schema.json.

The schema is written here in Python because five service blocks share most of
their shape and JSON Schema draft-07 (what Helm reads reliably) cannot combine
`allOf` with `additionalProperties: false`. Every object is closed
(`additionalProperties: false`) except free-form label/annotation maps, which take
strings only.

    python tests/deploy/gen_values_schema.py          # rewrite the schema
    python tests/deploy/gen_values_schema.py --check  # exit 1 if it is stale

tests/deploy/test_chart.py runs --check, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "charts" / "carevault" / "values.schema.json"

Schema = dict[str, Any]


def obj(properties: dict[str, Schema], required: list[str] | None = None, description: str | None = None) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": sorted(properties) if required is None else required,
    }
    if description:
        schema["description"] = description
    return schema


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def boolean() -> Schema:
    return {"type": "boolean"}


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def string_list(**items: Any) -> Schema:
    return {"type": "array", "items": {"type": "string", **items}}


CIDR = {"pattern": r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"}
PORT = integer(1, 65535)
QUANTITY = {"oneOf": [{"type": "string", "pattern": r"^[0-9.]+(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}, {"type": "number", "minimum": 0}]}
K8S_NAME = {"pattern": r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}

RESOURCES = obj(
    {
        "requests": obj({"cpu": QUANTITY, "memory": QUANTITY}),
        "limits": obj({"cpu": QUANTITY, "memory": QUANTITY}),
    }
)

TOLERATIONS = {
    "type": "array",
    "items": obj(
        {
            "key": string(),
            "operator": string(enum=["Exists", "Equal"]),
            "value": string(),
            "effect": string(enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
            "tolerationSeconds": integer(0),
        },
        required=[],
    ),
}

PEER = {
    "namespaceLabels": string_map(),
    "podLabels": string_map(),
}


def service_block(name: str, extra: dict[str, Schema]) -> Schema:
    properties: dict[str, Schema] = {
        "image": obj(
            {
                "repository": string(minLength=1),
                "tag": string(pattern=r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"),
                "digest": string(pattern=r"^$|^sha256:[a-f0-9]{64}$"),
            }
        ),
        "replicaCount": integer(1),
        "autoscaling": obj(
            {
                "minReplicas": integer(1),
                "maxReplicas": integer(1),
                "targetCPUUtilizationPercentage": integer(1, 100),
                "targetMemoryUtilizationPercentage": integer(1, 100),
            }
        ),
        "resources": RESOURCES,
        "podAnnotations": string_map(),
        "nodeSelector": string_map(),
        "tolerations": TOLERATIONS,
        "tls": obj({"existingSecret": string(**K8S_NAME)}),
    }
    if name != "gateway":
        properties["database"] = obj({"existingSecret": string(**K8S_NAME), "key": string(minLength=1)})
    properties.update(extra)
    return obj(properties, description=f"the {name} service")


REDIS = obj(
    {
        "enabled": boolean(),
        "existingSecret": string(**K8S_NAME),
        "key": string(minLength=1),
        "port": PORT,
        **PEER,
    }
)

GATEWAY_EXTRA: dict[str, Schema] = {
    "service": obj(
        {
            "type": string(enum=["ClusterIP", "LoadBalancer", "NodePort"]),
            "port": PORT,
            "annotations": string_map(),
        }
    ),
    "publicHostnames": string_list(pattern=r"^[a-z0-9*]([-a-z0-9.]*[a-z0-9])?$"),
    "publicUrl": string(pattern=r"^$|^https://[^\s/?#]+(/[^\s?#]*)?$"),
    "maxBodyBytes": integer(1),
    "clientIdleSeconds": {"type": "number", "exclusiveMinimum": 0},
    "trustedProxies": string_list(**CIDR),
    "redis": REDIS,
}

API_EXTRA: dict[str, Schema] = {
    "audit": obj(
        {
            "existingSecret": string(**K8S_NAME),
            "checkpointIntervalSeconds": integer(1, 86400),
            "retentionDays": integer(180),
        }
    ),
    "auth": obj(
        {
            "accessTokenTtlSeconds": integer(30, 3600),
            "signingAlgorithm": string(enum=["ES256", "EdDSA"]),
            "signingKeyRotationDays": {"type": "number", "exclusiveMinimum": 0},
            "revocationRefreshSeconds": {"type": "number", "minimum": 0.5, "maximum": 60},
        }
    ),
    "redis": REDIS,
    "secretsKey": obj({"existingSecret": string(**K8S_NAME), "key": string(minLength=1), "previousKey": string()}),
    "recordsBundleTimeoutSeconds": integer(1, 3600),
    "binary": obj(
        {
            "maxBytes": integer(1),
            "jsonLimitBytes": integer(0),
            "uploadMaxSeconds": integer(1),
            "orphanSweep": obj({"intervalSeconds": integer(0), "graceSeconds": integer(0)}),
        }
    ),
}

KEYSERVICE_EXTRA: dict[str, Schema] = {
    "doctorKeys": obj({"existingConfigMap": string(**K8S_NAME), "existingSecret": string(**K8S_NAME)}),
}

FILESERVICE_EXTRA: dict[str, Schema] = {
    "storage": obj(
        {
            "type": string(enum=["pvc", "s3"]),
            "pvc": obj(
                {
                    "existingClaim": string(**K8S_NAME),
                    "size": QUANTITY,
                    "storageClass": string(),
                    "accessMode": string(enum=["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]),
                }
            ),
            "s3": obj(
                {
                    "endpoint": string(pattern=r"^$|^https?://"),
                    "bucket": string(),
                    "region": string(),
                    "existingSecret": string(**K8S_NAME),
                    "accessKeyIdKey": string(minLength=1),
                    "secretAccessKeyKey": string(minLength=1),
                    "egressCidrs": string_list(**CIDR),
                    "port": PORT,
                }
            ),
        }
    ),
}

SPREAD = obj(
    {
        "topologyKey": string(minLength=1),
        "whenUnsatisfiable": string(enum=["DoNotSchedule", "ScheduleAnyway"]),
    }
)


def build() -> Schema:
    schema = obj(
        {
            "global": obj(
                {
                    "environment": string(enum=["dev", "demo", "preprod", "prod"]),
                    "imageRegistry": string(minLength=1),
                    "imagePullPolicy": string(enum=["Always", "IfNotPresent", "Never"]),
                    "imagePullSecrets": string_list(**K8S_NAME),
                    "logLevel": string(enum=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
                    "environmentBanner": obj({"enabled": boolean()}),
                    "environmentHeader": obj({"enabled": boolean(), "name": string(pattern=r"^[A-Za-z0-9-]+$")}),
                    "gracefulShutdownSeconds": integer(1, 300),
                    "preStopSleepSeconds": integer(1, 120),
                    "topologySpread": obj({"zone": SPREAD, "node": SPREAD}),
                }
            ),
            "observability": obj(
                {
                    "otlpEndpoint": string(pattern=r"^$|^https?://"),
                    "traceSampleRatio": {"type": "number", "minimum": 0, "maximum": 1},
                    "sentryDsn": string(pattern=r"^$|^https?://"),
                    "egress": obj({**PEER, "ports": {"type": "array", "items": PORT, "minItems": 1}}),
                }
            ),
            "autoscaling": obj({"enabled": boolean()}),
            "podDisruptionBudget": obj({"enabled": boolean()}),
            "networkPolicy": obj(
                {
                    "enabled": boolean(),
                    "dns": obj(PEER),
                    "prometheus": obj(PEER),
                    "kubeApiServer": obj({"cidrs": string_list(**CIDR), "ports": {"type": "array", "items": PORT, "minItems": 1}}),
                    "gatewayIngressCidrs": string_list(**CIDR),
                }
            ),
            "certManager": obj(
                {
                    "enabled": boolean(),
                    "issuer": obj(
                        {
                            "create": boolean(),
                            "existing": obj(
                                {
                                    "name": string(**K8S_NAME),
                                    "kind": string(enum=["Issuer", "ClusterIssuer"]),
                                    "group": string(minLength=1),
                                }
                            ),
                        }
                    ),
                    "duration": string(pattern=r"^[0-9]+h$"),
                    "renewBefore": string(pattern=r"^[0-9]+h$"),
                    "privateKey": obj({"algorithm": string(enum=["ECDSA", "RSA", "Ed25519"]), "size": integer(0, 8192)}),
                }
            ),
            "database": obj(
                {
                    "cnpg": obj(
                        {
                            "enabled": boolean(),
                            "instances": integer(1, 9),
                            "imageName": string(pattern=r"^[^:@\s]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?(@sha256:[a-f0-9]{64})?$"),
                            "operatorNamespace": string(**K8S_NAME),
                            "storage": obj({"size": QUANTITY, "storageClass": string()}),
                            "resources": RESOURCES,
                            "backup": obj(
                                {
                                    "enabled": boolean(),
                                    "destinationPath": string(pattern=r"^$|^(s3|gs|https)://"),
                                    "endpointURL": string(pattern=r"^$|^https?://"),
                                    "existingSecret": string(**K8S_NAME),
                                    "accessKeyIdKey": string(minLength=1),
                                    "secretAccessKeyKey": string(minLength=1),
                                    "retentionPolicy": string(pattern=r"^[1-9][0-9]*[dwm]$"),
                                    "schedule": string(pattern=r"^(\S+\s+){5}\S+$"),
                                    "egressCidrs": string_list(**CIDR),
                                    "port": PORT,
                                }
                            ),
                        }
                    ),
                    "external": obj({"cidrs": string_list(**CIDR), "port": PORT}),
                }
            ),
            "migrations": obj(
                {
                    "backoffLimit": integer(0, 20),
                    "activeDeadlineSeconds": integer(30),
                    "resources": RESOURCES,
                }
            ),
            "monitoring": obj(
                {
                    "serviceMonitor": obj({"enabled": boolean(), "interval": string(pattern=r"^[0-9]+(s|m)$"), "labels": string_map()}),
                    "prometheusRule": obj(
                        {
                            "enabled": boolean(),
                            "labels": string_map(),
                            "errorRateThreshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                            "latencyObjectiveSeconds": {"type": "number", "exclusiveMinimum": 0},
                            "latencyObjectiveRatio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        }
                    ),
                    "grafanaDashboard": obj({"enabled": boolean(), "labels": string_map()}),
                }
            ),
            "helmTest": obj({"enabled": boolean()}),
            "gateway": service_block("gateway", GATEWAY_EXTRA),
            "api": service_block("api", API_EXTRA),
            "records": service_block("records", {}),
            "keyservice": service_block("keyservice", KEYSERVICE_EXTRA),
            "fileservice": service_block("fileservice", FILESERVICE_EXTRA),
        },
        required=[],
    )
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "carevault chart values",
        "$comment": "Generated by tests/deploy/gen_values_schema.py; do not edit by hand.",
        **schema,
    }
    return schema


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is stale: run python tests/deploy/gen_values_schema.py", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
