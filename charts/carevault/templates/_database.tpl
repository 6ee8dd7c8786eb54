{{/*
Databases (one CloudNativePG Cluster per service that owns a database, so that the
key zone's database is not the data zone's) and the migration Jobs.
*/}}

{{/*
Hook phases of the migration Jobs. Against an external database they run before
anything of the release changes (pre-install, pre-upgrade). When the release itself
creates the CloudNativePG Clusters, a pre-install hook would wait for a database
that does not exist yet, so the first migration runs post-install (the services'
/readyz stays false until their schema exists); upgrades still migrate first.
*/}}
{{- define "carevault.migrationHook" -}}
{{- if .Values.database.cnpg.enabled -}}
post-install,pre-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end -}}
{{- end }}

{{- define "carevault.migrationJob" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $fact := include "carevault.fact" . | fromYaml -}}
{{- $m := dict "root" $root "svc" (printf "%s-migrate" $svc) -}}
{{- $p := $fact.prefix -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "carevault.svcName" . }}-migrate
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" $m | nindent 4 }}
  annotations:
    helm.sh/hook: {{ include "carevault.migrationHook" $root }}
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: {{ $root.Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $root.Values.migrations.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels:
        {{- include "carevault.labels" $m | nindent 8 }}
    spec:
      restartPolicy: Never
      # no dedicated ServiceAccount: it would not exist yet at pre-install
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "carevault.podSecurityContext" . | nindent 8 }}
      containers:
        - name: migrate
          image: {{ include "carevault.image" . | quote }}
          imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
          args: [migrate]
          # no ConfigMap: it does not exist yet at pre-install; migrate needs only these
          env:
            - name: {{ $p }}_DATABASE_URL_FILE
              value: /var/run/carevault/database/url
            - name: {{ $p }}_ENVIRONMENT
              value: {{ $root.Values.global.environment | quote }}
            - name: {{ $p }}_LOG_LEVEL
              value: {{ $root.Values.global.logLevel | quote }}
          resources:
            {{- toYaml $root.Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "carevault.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: database
              mountPath: /var/run/carevault/database
              readOnly: true
      volumes:
        - name: tmp
          emptyDir:
            medium: Memory
            sizeLimit: 64Mi
        - name: database
          secret:
            secretName: {{ include "carevault.databaseSecretName" . }}
            defaultMode: 0440
            items:
              - key: {{ include "carevault.databaseSecretKey" . }}
                path: url
{{- end }}

{{/* The migration Job may reach DNS and its own database, nothing else. It is a
hook too, created just before the Job. */}}
{{- define "carevault.migrationNetworkPolicy" -}}
{{- $root := .root -}}
{{- $m := dict "root" $root "svc" (printf "%s-migrate" .svc) -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "carevault.svcName" . }}-migrate
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" $m | nindent 4 }}
  annotations:
    helm.sh/hook: {{ include "carevault.migrationHook" $root }}
    helm.sh/hook-weight: "-5"
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  podSelector:
    matchLabels:
      {{- include "carevault.selectorLabels" $m | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress:
    {{- include "carevault.dnsEgress" $root | nindent 4 }}
    {{- include "carevault.databaseEgress" . | nindent 4 }}
{{- end }}

{{- define "carevault.dbCluster" -}}
{{- $root := .root -}}
{{- $c := $root.Values.database.cnpg -}}
{{- $name := include "carevault.dbClusterName" . -}}
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" (dict "root" $root "svc" (printf "%s-db" .svc)) | nindent 4 }}
spec:
  instances: {{ $c.instances }}
  imageName: {{ $c.imageName }}
  primaryUpdateStrategy: unsupervised
  enableSuperuserAccess: false
  bootstrap:
    initdb:
      database: {{ .svc }}
      owner: {{ .svc }}
  storage:
    size: {{ $c.storage.size }}
    {{- with $c.storage.storageClass }}
    storageClass: {{ . }}
    {{- end }}
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  affinity:
    enablePodAntiAffinity: true
    podAntiAffinityType: required
    topologyKey: {{ $root.Values.global.topologySpread.node.topologyKey }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: {{ $root.Values.global.topologySpread.zone.topologyKey }}
      whenUnsatisfiable: {{ $root.Values.global.topologySpread.zone.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          cnpg.io/cluster: {{ $name }}
  postgresql:
    parameters:
      log_min_duration_statement: "-1"
      log_statement: none
      lock_timeout: "5s"
  {{- if $c.backup.enabled }}
  plugins:
    - name: barman-cloud.cloudnative-pg.io
      isWALArchiver: true
      parameters:
        barmanObjectName: {{ $name }}-backups
  {{- end }}
{{- end }}

{{- define "carevault.dbObjectStore" -}}
{{- $root := .root -}}
{{- $b := $root.Values.database.cnpg.backup -}}
{{- $name := include "carevault.dbClusterName" . -}}
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: {{ $name }}-backups
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" (dict "root" $root "svc" (printf "%s-db" .svc)) | nindent 4 }}
spec:
  retentionPolicy: {{ $b.retentionPolicy | quote }}
  configuration:
    destinationPath: {{ printf "%s/%s" (trimSuffix "/" $b.destinationPath) .svc | quote }}
    {{- with $b.endpointURL }}
    endpointURL: {{ . | quote }}
    {{- end }}
    s3Credentials:
      accessKeyId:
        name: {{ $b.existingSecret }}
        key: {{ $b.accessKeyIdKey }}
      secretAccessKey:
        name: {{ $b.existingSecret }}
        key: {{ $b.secretAccessKeyKey }}
    wal:
      compression: gzip
    data:
      compression: gzip
{{- end }}

{{- define "carevault.dbScheduledBackup" -}}
{{- $root := .root -}}
{{- $name := include "carevault.dbClusterName" . -}}
apiVersion: postgresql.cnpg.io/v1
kind: ScheduledBackup
metadata:
  name: {{ $name }}-daily
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" (dict "root" $root "svc" (printf "%s-db" .svc)) | nindent 4 }}
spec:
  schedule: {{ $root.Values.database.cnpg.backup.schedule | quote }}
  immediate: true
  backupOwnerReference: self
  cluster:
    name: {{ $name }}
  method: plugin
  pluginConfiguration:
    name: barman-cloud.cloudnative-pg.io
{{- end }}

{{/*
The database pods: reachable on 5432 by their own service and its migration Job
only; replication between instances; the CloudNativePG operator on 8000 (status)
and 5432; Prometheus on 9187. Out: DNS, the other instances, the Kubernetes API
(the instance manager) and, with backups on, the object storage.
*/}}
{{- define "carevault.dbNetworkPolicy" -}}
{{- $root := .root -}}
{{- $np := $root.Values.networkPolicy -}}
{{- $c := $root.Values.database.cnpg -}}
{{- $name := include "carevault.dbClusterName" . -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" (dict "root" $root "svc" (printf "%s-db" .svc)) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      cnpg.io/cluster: {{ $name }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" . | nindent 14 }}
        - podSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" (dict "root" $root "svc" (printf "%s-migrate" .svc)) | nindent 14 }}
      ports:
        - protocol: TCP
          port: 5432
    - from:
        - podSelector:
            matchLabels:
              cnpg.io/cluster: {{ $name }}
      ports:
        - protocol: TCP
          port: 5432
        - protocol: TCP
          port: 8000
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $c.operatorNamespace }}
          podSelector:
            matchLabels:
              app.kubernetes.io/name: cloudnative-pg
      ports:
        - protocol: TCP
          port: 8000
        - protocol: TCP
          port: 5432
    - from:
        {{- include "carevault.peer" $np.prometheus | nindent 8 }}
      ports:
        - protocol: TCP
          port: 9187
  egress:
    {{- include "carevault.dnsEgress" $root | nindent 4 }}
    - to:
        - podSelector:
            matchLabels:
              cnpg.io/cluster: {{ $name }}
      ports:
        - protocol: TCP
          port: 5432
        - protocol: TCP
          port: 8000
    {{- if $np.kubeApiServer.cidrs }}
    - to:
        {{- range $np.kubeApiServer.cidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        {{- range $np.kubeApiServer.ports }}
        - protocol: TCP
          port: {{ . }}
        {{- end }}
    {{- end }}
    {{- if $c.backup.enabled }}
    - to:
        {{- range $c.backup.egressCidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        - protocol: TCP
          port: {{ $c.backup.port }}
    {{- end }}
{{- end }}

{{- define "carevault.blobsPvc" -}}
{{- $v := .root.Values.fileservice.storage.pvc -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "carevault.svcName" . }}-blobs
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
  annotations:
    # ciphertext blobs outlive a release: uninstalling keeps them
    helm.sh/resource-policy: keep
spec:
  accessModes: [{{ $v.accessMode }}]
  {{- with $v.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $v.size }}
{{- end }}
