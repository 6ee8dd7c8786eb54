{{/*
carevault.validateValues: refuse unsafe or nonsensical combinations. The schema
(values.schema.json) checks keys and types; this checks what a schema cannot say.
All problems are reported at once.
*/}}
{{- define "carevault.validateValues" -}}
{{- $v := .Values -}}
{{- $env := $v.global.environment -}}
{{- $prod := eq $env "prod" -}}
{{- $prodLike := or $prod (eq $env "preprod") -}}
{{- $errors := list -}}
{{- $services := splitList " " (include "carevault.serviceNames" .) -}}

{{- range $svc := $services -}}
{{- $s := get $v $svc -}}
{{- if and $prod (lt (int $s.replicaCount) 2) -}}
{{- $errors = append $errors (printf "%s.replicaCount is %d: prod needs at least 2 replicas per service (3 recommended)" $svc (int $s.replicaCount)) -}}
{{- end -}}
{{- if and $prod $v.autoscaling.enabled (lt (int $s.autoscaling.minReplicas) 2) -}}
{{- $errors = append $errors (printf "%s.autoscaling.minReplicas is %d: prod needs at least 2" $svc (int $s.autoscaling.minReplicas)) -}}
{{- end -}}
{{- if gt (int $s.autoscaling.minReplicas) (int $s.autoscaling.maxReplicas) -}}
{{- $errors = append $errors (printf "%s.autoscaling.minReplicas exceeds maxReplicas" $svc) -}}
{{- end -}}
{{- if eq $s.image.tag "latest" -}}
{{- $errors = append $errors (printf "%s.image.tag is latest: use a release tag and, in prod, a digest" $svc) -}}
{{- end -}}
{{- if and $prod (not $s.image.digest) -}}
{{- $errors = append $errors (printf "%s.image.digest is empty: prod pins images by digest (set it from the release pipeline)" $svc) -}}
{{- end -}}
{{- if and (not $v.certManager.enabled) (not $s.tls.existingSecret) -}}
{{- $errors = append $errors (printf "%s.tls.existingSecret is required when certManager.enabled is false" $svc) -}}
{{- end -}}
{{- end -}}

{{- if and $v.certManager.enabled (not $v.certManager.issuer.create) (not $v.certManager.issuer.existing.name) -}}
{{- $errors = append $errors "certManager.issuer.existing.name is required when certManager.issuer.create is false" -}}
{{- end -}}
{{- if and $prod $v.certManager.enabled $v.certManager.issuer.create -}}
{{- $errors = append $errors "certManager.issuer.create is true in prod: a CA key generated inside the namespace is not a production CA; set certManager.issuer.existing" -}}
{{- end -}}

{{- $c := $v.database.cnpg -}}
{{- if $c.enabled -}}
{{- if and $prod (lt (int $c.instances) 3) -}}
{{- $errors = append $errors (printf "database.cnpg.instances is %d: prod needs 3 (one primary, two replicas)" (int $c.instances)) -}}
{{- end -}}
{{- if and $prodLike $v.networkPolicy.enabled (not $v.networkPolicy.kubeApiServer.cidrs) -}}
{{- $errors = append $errors "networkPolicy.kubeApiServer.cidrs is empty: CloudNativePG instances must reach the Kubernetes API" -}}
{{- end -}}
{{- if and $prod (not $c.backup.enabled) -}}
{{- $errors = append $errors "database.cnpg.backup.enabled is false in prod: base backups and WAL archiving are part of the disaster-recovery plan" -}}
{{- end -}}
{{- if $c.backup.enabled -}}
{{- if not $c.backup.destinationPath -}}
{{- $errors = append $errors "database.cnpg.backup.destinationPath is required when backups are enabled" -}}
{{- end -}}
{{- if not $c.backup.existingSecret -}}
{{- $errors = append $errors "database.cnpg.backup.existingSecret is required when backups are enabled" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $c.backup.egressCidrs) -}}
{{- $errors = append $errors "database.cnpg.backup.egressCidrs is empty: the database pods could not reach the object storage (an empty list would mean anywhere)" -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- if and $v.networkPolicy.enabled (not $v.database.external.cidrs) -}}
{{- $errors = append $errors "database.external.cidrs is empty: name the external database's addresses (an empty list would mean anywhere)" -}}
{{- end -}}
{{- end -}}

{{- $g := $v.gateway -}}
{{- if and $g.redis.enabled (not $g.redis.existingSecret) -}}
{{- $errors = append $errors "gateway.redis.existingSecret is required when gateway.redis.enabled is true" -}}
{{- end -}}
{{- if and $prodLike (not $g.redis.enabled) -}}
{{- $errors = append $errors "gateway.redis.enabled is false: rate limits and replay caches must be shared across gateway replicas in prod and preprod" -}}
{{- end -}}
{{- $publicUrl := include "carevault.publicUrl" . -}}
{{- if and $prodLike (not $publicUrl) -}}
{{- $errors = append $errors "gateway.publicUrl (or gateway.publicHostnames) is required in prod and preprod: it is the token issuer and the URL DPoP proofs name" -}}
{{- end -}}
{{- if and $publicUrl (not (hasPrefix "https://" $publicUrl)) -}}
{{- $errors = append $errors "gateway.publicUrl must start with https://" -}}
{{- end -}}
{{- $a := $v.api -}}
{{- if and $a.redis.enabled (not $a.redis.existingSecret) -}}
{{- $errors = append $errors "api.redis.existingSecret is required when api.redis.enabled is true" -}}
{{- end -}}
{{- if and (ne $env "dev") (not $a.secretsKey.existingSecret) -}}
{{- $errors = append $errors "api.secretsKey.existingSecret is required outside dev: api seals TOTP secrets and signing keys with it" -}}
{{- end -}}

{{- if and (ne $v.global.environment "dev") (not $v.api.audit.existingSecret) -}}
{{- $errors = append $errors "api.audit.existingSecret is required outside dev: the audit trail's checkpoint and pseudonym keys (carevault audit keygen, docs/operations-audit.md)" -}}
{{- end -}}

{{- $k := $v.keyservice.doctorKeys -}}
{{- if and $k.existingConfigMap $k.existingSecret -}}
{{- $errors = append $errors "keyservice.doctorKeys: set existingConfigMap or existingSecret, not both" -}}
{{- end -}}

{{- $f := $v.fileservice.storage -}}
{{- if eq $f.type "s3" -}}
{{- range $key := list "bucket" "existingSecret" -}}
{{- if not (get $f.s3 $key) -}}
{{- $errors = append $errors (printf "fileservice.storage.s3.%s is required when storage.type is s3" $key) -}}
{{- end -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $f.s3.egressCidrs) -}}
{{- $errors = append $errors "fileservice.storage.s3.egressCidrs is empty: name the object storage's addresses (an empty list would mean anywhere)" -}}
{{- end -}}
{{- else -}}
{{- $many := or $v.autoscaling.enabled (gt (int $v.fileservice.replicaCount) 1) -}}
{{- if and $many (eq $f.pvc.accessMode "ReadWriteOnce") (not $f.pvc.existingClaim) -}}
{{- $errors = append $errors "fileservice.storage.pvc.accessMode is ReadWriteOnce with more than one replica: use ReadWriteMany, or s3" -}}
{{- end -}}
{{- end -}}

{{- if and (or $v.observability.otlpEndpoint $v.observability.sentryDsn) $v.networkPolicy.enabled -}}
{{- if not (or $v.observability.egress.namespaceLabels $v.observability.egress.podLabels) -}}
{{- $errors = append $errors "observability.egress: name the collector's namespaceLabels or podLabels when telemetry export is on" -}}
{{- end -}}
{{- end -}}

{{/* inline secrets: credentials in a URL value */}}
{{- $urls := dict "observability.otlpEndpoint" $v.observability.otlpEndpoint "observability.sentryDsn" $v.observability.sentryDsn "fileservice.storage.s3.endpoint" $f.s3.endpoint "database.cnpg.backup.endpointURL" $c.backup.endpointURL "database.cnpg.backup.destinationPath" $c.backup.destinationPath -}}
{{- range $key, $url := $urls -}}
{{- if regexMatch "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@" $url -}}
{{- $errors = append $errors (printf "%s carries a password: secrets come from existingSecret files, never from values" $key) -}}
{{- end -}}
{{- end -}}

{{- if and $prod (or $v.global.environmentBanner.enabled $v.global.environmentHeader.enabled) -}}
{{- $errors = append $errors "global.environmentBanner / environmentHeader are for preprod, not prod" -}}
{{- end -}}
{{- if and (eq $env "preprod") (not $v.global.environmentBanner.enabled) -}}
{{- $errors = append $errors "global.environmentBanner.enabled must be true in preprod (the banner tells testers it is not prod)" -}}
{{- end -}}
{{- if and $prodLike (not $v.networkPolicy.enabled) -}}
{{- $errors = append $errors "networkPolicy.enabled is false: prod and preprod enforce the zones with NetworkPolicies" -}}
{{- end -}}
{{- if and $prodLike (not $v.podDisruptionBudget.enabled) -}}
{{- $errors = append $errors "podDisruptionBudget.enabled is false in prod or preprod" -}}
{{- end -}}

{{- if $errors -}}
{{- fail (printf "\n\ncarevault: unsafe values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end }}
