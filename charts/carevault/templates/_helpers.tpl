{{/*
Namespaced helpers of the carevault chart. Every template under templates/<service>/
calls the shared resource templates of _workload.tpl with
(dict "root" $ "svc" "<service>").
*/}}

{{/* The five services, in call-graph order. */}}
{{- define "carevault.serviceNames" -}}
gateway api records keyservice fileservice
{{- end }}

{{/*
Static facts of each service: env prefix, zone, whether it owns a database, and the
services it calls. This is the ONE place where the call graph lives in the chart;
NetworkPolicies, upstream URLs and the mTLS allow-lists follow from it.
*/}}
{{- define "carevault.facts" -}}
gateway:
  prefix: GATEWAY
  zone: public
  ownsDatabase: false
  calls: [api]
api:
  prefix: API
  zone: application
  ownsDatabase: true
  calls: [records, fileservice, keyservice]
records:
  prefix: RECORDS
  zone: data
  ownsDatabase: true
  calls: [keyservice]
keyservice:
  prefix: KEYSERVICE
  zone: key
  ownsDatabase: true
  calls: []
fileservice:
  prefix: FILESERVICE
  zone: blob
  ownsDatabase: true
  calls: []
{{- end }}

{{/* Facts of one service: include "carevault.fact" (dict "svc" "records") | fromYaml */}}
{{- define "carevault.fact" -}}
{{- $all := include "carevault.facts" . | fromYaml -}}
{{- toYaml (get $all .svc) -}}
{{- end }}

{{/* Callers of a service, as a space-separated list. */}}
{{- define "carevault.callers" -}}
{{- $all := include "carevault.facts" . | fromYaml -}}
{{- $callers := list -}}
{{- range $name := splitList " " (include "carevault.serviceNames" .) -}}
{{- if has $.svc (get $all $name).calls -}}
{{- $callers = append $callers $name -}}
{{- end -}}
{{- end -}}
{{- join " " $callers -}}
{{- end }}

{{- define "carevault.name" -}}
{{- .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end }}

{{/* Release-scoped prefix of every resource name (at most 40 characters, so that
"<fullname>-fileservice-migrate" and friends stay within 63). */}}
{{- define "carevault.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* Name of a service's resources: include "carevault.svcName" (dict "root" $ "svc" "api") */}}
{{- define "carevault.svcName" -}}
{{- printf "%s-%s" (include "carevault.fullname" .root) .svc -}}
{{- end }}

{{- define "carevault.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels every resource carries, besides its name/instance (selector) labels. */}}
{{- define "carevault.baseLabels" -}}
helm.sh/chart: {{ include "carevault.chartLabel" . }}
app.kubernetes.io/part-of: carevault
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
carevault.io/environment: {{ .Values.global.environment }}
{{- end }}

{{/* Labels of the release-wide resources. */}}
{{- define "carevault.commonLabels" -}}
{{ include "carevault.baseLabels" . }}
app.kubernetes.io/name: {{ include "carevault.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component (a service, its database, its migration). */}}
{{- define "carevault.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carevault.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}

{{- define "carevault.labels" -}}
{{ include "carevault.baseLabels" .root }}
{{ include "carevault.selectorLabels" . }}
{{- /* "records-db" and "records-migrate" belong to the zone of "records" */}}
{{- $all := include "carevault.facts" . | fromYaml }}
{{- $base := first (splitList "-" .svc) }}
{{- if hasKey $all $base }}
carevault.io/zone: {{ (get $all $base).zone }}
{{- end }}
{{- end }}

{{/* <registry>/<repository>[:tag][@digest] */}}
{{- define "carevault.image" -}}
{{- $v := get .root.Values .svc -}}
{{- $tag := default .root.Chart.AppVersion $v.image.tag -}}
{{- $ref := printf "%s/%s:%s" .root.Values.global.imageRegistry $v.image.repository $tag -}}
{{- if $v.image.digest -}}
{{- $ref = printf "%s@%s" $ref $v.image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end }}

{{/* In-cluster HTTPS URL of a service's TLS port. */}}
{{- define "carevault.url" -}}
{{- printf "https://%s.%s.svc:8443" (include "carevault.svcName" .) .root.Release.Namespace -}}
{{- end }}

{{/* Secret holding tls.crt, tls.key and ca.crt of a service. */}}
{{- define "carevault.tlsSecretName" -}}
{{- $v := get .root.Values .svc -}}
{{- if .root.Values.certManager.enabled -}}
{{- printf "%s-tls" (include "carevault.svcName" .) -}}
{{- else -}}
{{- $v.tls.existingSecret -}}
{{- end -}}
{{- end }}

{{/* Name of a service's CloudNativePG Cluster. */}}
{{- define "carevault.dbClusterName" -}}
{{- printf "%s-db" (include "carevault.svcName" .) -}}
{{- end }}

{{/* Secret and key holding a service's database URL. */}}
{{- define "carevault.databaseSecretName" -}}
{{- $v := get .root.Values .svc -}}
{{- if .root.Values.database.cnpg.enabled -}}
{{- printf "%s-app" (include "carevault.dbClusterName" .) -}}
{{- else -}}
{{- default (printf "%s-database" (include "carevault.svcName" .)) $v.database.existingSecret -}}
{{- end -}}
{{- end }}

{{- define "carevault.databaseSecretKey" -}}
{{- $v := get .root.Values .svc -}}
{{- if .root.Values.database.cnpg.enabled -}}
uri
{{- else -}}
{{- $v.database.key -}}
{{- end -}}
{{- end }}

{{/* Whether a service exports traces / error reports (never keyservice). */}}
{{- define "carevault.exportsTelemetry" -}}
{{- if and (ne .svc "keyservice") (or .root.Values.observability.otlpEndpoint .root.Values.observability.sentryDsn) -}}
true
{{- end -}}
{{- end }}

{{- define "carevault.terminationGracePeriodSeconds" -}}
{{- add .Values.global.preStopSleepSeconds .Values.global.gracefulShutdownSeconds 10 -}}
{{- end }}

{{/* Pod-level securityContext meeting Pod Security Standards "restricted". */}}
{{- define "carevault.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level securityContext meeting Pod Security Standards "restricted". */}}
{{- define "carevault.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Environment of a service (the ConfigMap's data): settings per contract.md. */}}
{{/* The public base URL of the platform (gateway.publicUrl, else https:// + the first
public hostname; empty: the services' defaults): the DPoP htu at the gateway and at
api, and the issuer of api's tokens. Both must see the same one. */}}
{{- define "carevault.publicUrl" -}}
{{- $g := .Values.gateway -}}
{{- if $g.publicUrl -}}
{{- trimSuffix "/" $g.publicUrl -}}
{{- else if $g.publicHostnames -}}
{{- printf "https://%s" (first $g.publicHostnames) -}}
{{- end -}}
{{- end -}}

{{- define "carevault.env" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $v := get $root.Values $svc -}}
{{- $fact := include "carevault.fact" . | fromYaml -}}
{{- $p := $fact.prefix -}}
{{ $p }}_HOST: "0.0.0.0"
{{ $p }}_PORT: "8443"
{{ $p }}_MANAGEMENT_PORT: "9090"
{{ $p }}_TLS_CERT_FILE: /var/run/carevault/tls/tls.crt
{{ $p }}_TLS_KEY_FILE: /var/run/carevault/tls/tls.key
{{ $p }}_TLS_CA_FILE: /var/run/carevault/tls/ca.crt
{{ $p }}_ENVIRONMENT: {{ $root.Values.global.environment | quote }}
{{ $p }}_LOG_LEVEL: {{ $root.Values.global.logLevel | quote }}
{{ $p }}_GRACEFUL_SHUTDOWN_SECONDS: {{ $root.Values.global.gracefulShutdownSeconds | quote }}
{{- if include "carevault.exportsTelemetry" . }}
{{ $p }}_OTLP_ENDPOINT: {{ $root.Values.observability.otlpEndpoint | quote }}
{{ $p }}_TRACE_SAMPLE_RATIO: {{ $root.Values.observability.traceSampleRatio | quote }}
{{ $p }}_SENTRY_DSN: {{ $root.Values.observability.sentryDsn | quote }}
{{- else }}
{{ $p }}_OTLP_ENDPOINT: ""
{{ $p }}_SENTRY_DSN: ""
{{- end }}
{{- if $fact.ownsDatabase }}
{{ $p }}_DATABASE_URL_FILE: /var/run/carevault/database/url
{{- end }}
{{- range $callee := $fact.calls }}
{{ $p }}_{{ upper $callee }}_URL: {{ include "carevault.url" (dict "root" $root "svc" $callee) | quote }}
{{- end }}
{{- if and (eq $svc "api") $root.Values.global.environmentBanner.enabled }}
API_ENVIRONMENT_BANNER: "true"
{{- end }}
{{- if and (eq $svc "gateway") $root.Values.global.environmentHeader.enabled }}
GATEWAY_ENVIRONMENT_HEADER: {{ $root.Values.global.environmentHeader.name | quote }}
{{- end }}
{{- $publicUrl := include "carevault.publicUrl" $root }}
{{- if eq $svc "gateway" }}
GATEWAY_MAX_BODY_BYTES: {{ $v.maxBodyBytes | quote }}
GATEWAY_CLIENT_IDLE_SECONDS: {{ $v.clientIdleSeconds | quote }}
GATEWAY_TRUSTED_PROXIES: {{ join "," $v.trustedProxies | quote }}
GATEWAY_MAX_BINARY_BODY_BYTES: {{ $root.Values.api.binary.maxBytes | int64 | quote }}
{{- if $publicUrl }}
GATEWAY_PUBLIC_URL: {{ $publicUrl | quote }}
{{- end }}
{{- if $v.redis.enabled }}
GATEWAY_REDIS_URL_FILE: /var/run/carevault/redis/url
{{- else }}
GATEWAY_REDIS_URL: ""
{{- end }}
{{- end }}
{{- if eq $svc "api" }}
API_AUDIT_CHECKPOINT_INTERVAL_SECONDS: {{ $v.audit.checkpointIntervalSeconds | quote }}
API_AUDIT_RETENTION_DAYS: {{ $v.audit.retentionDays | quote }}
{{- if $v.audit.existingSecret }}
API_AUDIT_CHECKPOINT_KEY_FILE: /var/run/carevault/audit/checkpoint.key
API_AUDIT_PSEUDONYM_KEY_FILE: /var/run/carevault/audit/pseudonym.key
{{- end }}
{{- if $publicUrl }}
API_PUBLIC_URL: {{ $publicUrl | quote }}
{{- end }}
{{- if $v.redis.enabled }}
API_REDIS_URL_FILE: /var/run/carevault/redis/url
{{- else }}
API_REDIS_URL: ""
{{- end }}
API_ACCESS_TOKEN_TTL_SECONDS: {{ $v.auth.accessTokenTtlSeconds | quote }}
API_SIGNING_ALGORITHM: {{ $v.auth.signingAlgorithm | quote }}
API_SIGNING_KEY_ROTATION_DAYS: {{ $v.auth.signingKeyRotationDays | quote }}
API_REVOCATION_REFRESH_SECONDS: {{ $v.auth.revocationRefreshSeconds | quote }}
API_RECORDS_BUNDLE_TIMEOUT_SECONDS: {{ $v.recordsBundleTimeoutSeconds | quote }}
API_MAX_BINARY_BYTES: {{ $v.binary.maxBytes | int64 | quote }}
API_BINARY_JSON_LIMIT: {{ $v.binary.jsonLimitBytes | int64 | quote }}
API_BINARY_UPLOAD_MAX_SECONDS: {{ $v.binary.uploadMaxSeconds | int64 | quote }}
API_BINARY_ORPHAN_SWEEP_INTERVAL_SECONDS: {{ $v.binary.orphanSweep.intervalSeconds | int64 | quote }}
API_BINARY_ORPHAN_GRACE_SECONDS: {{ $v.binary.orphanSweep.graceSeconds | int64 | quote }}
{{- if $v.secretsKey.existingSecret }}
API_SECRETS_KEY_FILE: /var/run/carevault/secrets-key/key
{{- if $v.secretsKey.previousKey }}
API_SECRETS_PREVIOUS_KEY_FILE: /var/run/carevault/secrets-key/previous
{{- end }}
{{- end }}
{{- end }}
{{- if eq $svc "keyservice" }}
KEYSERVICE_DOCTOR_KEYS_DIR: /var/run/carevault/doctor-keys
{{- end }}
{{- if eq $svc "fileservice" }}
FILESERVICE_MAX_BLOB_BYTES: {{ $root.Values.api.binary.maxBytes | int64 | quote }}
{{- if eq $v.storage.type "s3" }}
FILESERVICE_S3_ENDPOINT: {{ $v.storage.s3.endpoint | quote }}
FILESERVICE_S3_BUCKET: {{ $v.storage.s3.bucket | quote }}
FILESERVICE_S3_REGION: {{ $v.storage.s3.region | quote }}
FILESERVICE_S3_ACCESS_KEY_ID_FILE: /var/run/carevault/s3/access-key-id
FILESERVICE_S3_SECRET_ACCESS_KEY_FILE: /var/run/carevault/s3/secret-access-key
{{- else }}
FILESERVICE_BLOB_DIR: /var/lib/carevault/blobs
{{- end }}
{{- end }}
{{- end }}

{{/* A NetworkPolicy peer from namespace/pod labels (empty namespace labels = this namespace). */}}
{{- define "carevault.peer" -}}
- podSelector:
    {{- if .podLabels }}
    matchLabels:
      {{- toYaml .podLabels | nindent 6 }}
    {{- else }}
    {}
    {{- end }}
  {{- if .namespaceLabels }}
  namespaceSelector:
    matchLabels:
      {{- toYaml .namespaceLabels | nindent 6 }}
  {{- end }}
{{- end }}

{{/* Egress to cluster DNS. */}}
{{- define "carevault.dnsEgress" -}}
- to:
    {{- include "carevault.peer" .Values.networkPolicy.dns | nindent 4 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
